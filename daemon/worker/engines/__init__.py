"""Lip-sync engines. torch is imported only below this package."""
