"""The status page's building blocks: the stylesheet, escaping, tables that stack into cards on a phone,
times with date and zone, and preview pictures. page.py arranges sections made of these."""

from __future__ import annotations

import html
import time
import urllib.parse

from daemon.housekeeping.texts import number

CSS = """
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2330;--mute:#667085;--line:#e4e7ec;--ok:#12805c;--warn:#b54708;
--bad:#c01048;--bar:#2e6be6}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.45 system-ui,-apple-system,"Segoe UI",
"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",Roboto,sans-serif}
main{max-width:1100px;margin:0 auto;padding:16px}
h1{font-size:1.35em;margin:0 0 2px}h2{font-size:1.05em;margin:22px 0 8px}
.sub{color:var(--mute);font-size:.88em}
.banner{border-radius:8px;padding:10px 14px;margin:12px 0;font-weight:600}
.banner.bad{background:#fde8ee;color:var(--bad)}.banner.warn{background:#fef0e6;color:var(--warn)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px;margin-top:14px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 12px}
.card b{display:block;font-size:1.6em;line-height:1.2}.card span{color:var(--mute);font-size:.85em}
.card.bad b{color:var(--bad)}.card.ok b{color:var(--ok)}.card.warn b{color:var(--warn)}
.wrap{overflow-x:auto;background:var(--card);border:1px solid var(--line);border-radius:10px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.8em;color:var(--mute);font-weight:600;white-space:nowrap}
tr:last-child td{border-bottom:0}
td.job{font-weight:600;word-break:break-all;min-width:9em}
.bar{height:8px;background:var(--line);border-radius:4px;min-width:90px;overflow:hidden}
.bar i{display:block;height:100%;background:var(--bar)}
.num{white-space:nowrap;font-variant-numeric:tabular-nums}
.empty{color:var(--mute);padding:10px 12px;background:var(--card);border:1px dashed var(--line);border-radius:10px}
.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}
.todo{font-weight:600}
.shot img{display:block;max-width:100%;height:auto;max-height:160px;border-radius:6px;border:1px solid var(--line)}
.shot figcaption{color:var(--mute);font-size:.8em;margin-top:2px}
.shot{margin:0}
footer{color:var(--mute);font-size:.85em;margin:24px 0 8px}
@media (max-width:640px){main{padding:10px}.wide{display:none}th,td{padding:6px 7px}body{font-size:14px}
table.stack thead{display:none}
table.stack,table.stack tbody,table.stack tr,table.stack td{display:block;width:100%}
table.stack tr{border-bottom:1px solid var(--line);padding:6px 0}table.stack tr:last-child{border-bottom:0}
table.stack td{border:0;padding:3px 10px}table.stack td:first-child{font-weight:600}
table.stack td:not(:first-child)::before{content:attr(data-label);display:block;color:var(--mute);
font-size:.78em;font-weight:600}}
"""

# times are written in the writer's zone with its offset; the browser rewrites them into its own zone
LOCAL_TIME_JS = """
(function(){function p(n){return(n<10?'0':'')+n}
document.querySelectorAll('time[datetime]').forEach(function(t){var d=new Date(t.getAttribute('datetime'));
if(isNaN(d))return;var o=-d.getTimezoneOffset(),z=o?'UTC'+(o<0?'-':'+')+p(Math.floor(Math.abs(o)/60))+':'+
p(Math.abs(o)%60):'UTC';t.textContent=d.getFullYear()+'-'+p(d.getMonth()+1)+'-'+p(d.getDate())+' '+
p(d.getHours())+':'+p(d.getMinutes())+(t.hasAttribute('data-s')?':'+p(d.getSeconds()):'')+' '+z;});})();
"""


def e(value: object) -> str:
    """Escape anything for HTML text and attribute values (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def plain_time(stamp: float | None, seconds: bool = False) -> str:
    """Date, time and zone as text ("2026-12-01 14:03 UTC+08:00"), or "–" for no valid time."""
    if not stamp or not number(stamp) or not 0 < stamp < 1e11:
        return "–"
    local = time.localtime(stamp)
    offset = time.strftime("%z", local)  # +0800
    zone = "UTC" if offset in ("+0000", "-0000", "") else f"UTC{offset[:3]}:{offset[3:]}"
    return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", local) + f" {zone}"


def when(stamp: float | None, seconds: bool = False) -> str:
    """`<time>` with date, time and zone ("2026-12-01 14:03 UTC+08:00"), or "–" for no valid time."""
    shown = plain_time(stamp, seconds)
    if shown == "–":
        return shown
    local = time.localtime(stamp)
    offset = time.strftime("%z", local)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", local) + (f"{offset[:3]}:{offset[3:]}" if offset else "Z")
    return f'<time datetime="{iso}"{" data-s" if seconds else ""}>{shown}</time>'


def picture(path: str | None, alt: str, caption: str = "") -> str:
    """A preview picture linked to itself (tap for full size); `path` is relative to the share root."""
    if not path:
        return "–"
    url = e(urllib.parse.quote(path))
    cap = f"<figcaption>{e(caption)}</figcaption>" if caption else ""
    return f'<figure class="shot"><a href="{url}"><img src="{url}" alt="{e(alt)}" loading="lazy"></a>{cap}</figure>'


def table(title: str, section: str, headers: list[tuple[str, bool]], rows: list[list[str]], empty: str,
          stack: bool = False) -> str:
    """headers: (text, wide); wide columns hide on phones. `stack`: on a phone each row becomes a card
    whose cells are labelled, so no column is lost. Cells are already-escaped HTML."""
    out = [f'<h2>{e(title)}</h2>']
    if not rows:
        out.append(f'<div class="empty" id="{section}-empty">{e(empty)}</div>')
        return "".join(out)
    cls = ["wide" if wide else "" for _t, wide in headers]
    out.append(f'<div class="wrap"><table id="{section}"{" class=stack" if stack else ""}><thead><tr>')
    out += [f'<th class="{c}">{e(t)}</th>' for (t, _w), c in zip(headers, cls, strict=True)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cells = (f'<td class="{c}" data-label="{e(t)}">{cell}</td>'
                 for cell, c, (t, _w) in zip(row, cls, headers, strict=True))
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)
