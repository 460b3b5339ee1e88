"""Generate a demo talking-head job offline: a real portrait (scikit-image's astronaut) gently moving,
and a synthetic voice from espeak-ng. Usage: python demo/make_job.py OUTDIR"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from skimage import data
from skimage.io import imsave

TEXT = ("Hello, and welcome to lips sync D. Drop a speech track, a presenter video and a small ticket "
        "into the inbox, and the appliance does the rest.")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    portrait = out / "portrait.png"
    imsave(portrait, data.astronaut(), check_contrast=False)
    raw = out / "speech-raw.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), TEXT], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(out / "speech.wav")], check=True)
    # a slow, small zoom so the presenter is a video, not a still
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-loop", "1", "-i", str(portrait),
                    "-vf", "zoompan=z='1.0+0.03*sin(2*PI*on/125)':d=1:s=512x512:fps=25,format=yuv420p",
                    "-t", "5", "-c:v", "libx264", "-preset", "veryfast", str(out / "presenter.mp4")],
                   check=True)
    print(f"demo job media in {out}: speech.wav, presenter.mp4")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-media"))
