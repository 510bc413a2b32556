"""The report's style and script, each one block, allowed by hash in the report's
Content-Security-Policy (nothing else may run or style the page, nothing may be fetched).

The script opens a kept request in place: its ``<template>`` is copied into the one
``<dialog>`` (so element ids stay unique: only one request's listing is in the page at a
time), the address gets ``#r12`` (a link to it opens it; the browser's back closes it), and
the dialog's back button, Escape or a click beside it go back to the list. It also sorts the
list by a column, draws the listing's timeline bars, and highlights a finding's calls.
No inline event handlers, no ``style`` attributes: bars are sized through the CSSOM.
"""

from __future__ import annotations

from ioprofiler.render.html import _STYLE as PANEL_STYLE  # the listing looks as in the panel

STYLE = (
    """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d2330;
background:#fff}
header.top{padding:12px 16px 10px;background:#eef1fb;border-bottom:3px solid #3b5bdb}
header.top h1{font-size:18px;margin:0 0 2px;overflow-wrap:anywhere}
header.top p{margin:0;color:#454c63}
main{padding:4px 16px 24px;max-width:1400px}
h2{font-size:16px;margin:18px 0 6px}
h3{font-size:14px;margin:12px 0 4px}
p.facts{margin:4px 0;color:#454c63}
p.none{color:#68708a;margin:2px 0}
.charts{display:grid;grid-template-columns:1fr;gap:6px}
@media (min-width:1500px){.charts{grid-template-columns:1fr 1fr}}
figure.chart{margin:0;min-width:0}
figure.chart figcaption{font-weight:600;font-size:13px}
figure.chart svg{display:block;width:100%;height:auto}
ul.legend{display:inline;list-style:none;margin:0 0 0 10px;padding:0;font-weight:400}
ul.legend li{display:inline-block;margin-right:10px;font-size:12px;color:#454c63}
ul.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;
vertical-align:-1px}
svg .grid{stroke:#e4e6ef;stroke-width:1}
svg .tick{stroke:#8a8fa3}
svg text{font:11px system-ui,sans-serif;fill:#5a6178}
svg .yl{text-anchor:end}
svg .xl{text-anchor:middle}
svg .line{fill:none;stroke-width:2;stroke-linejoin:round}
svg .marker line{stroke:#c92a2a;stroke-width:1.5;stroke-dasharray:5 3}
svg .ml{fill:#c92a2a;font-weight:600}
svg .band{fill:transparent}
svg .band:hover{fill:rgba(59,91,219,.08)}
.c0{stroke:#3b5bdb}.c1{stroke:#e8590c}.c2{stroke:#2b8a3e}.c3{stroke:#c2255c}
.c4{stroke:#7048e8}.c5{stroke:#0c8599}
circle.c0{fill:#3b5bdb}circle.c1{fill:#e8590c}circle.c2{fill:#2b8a3e}circle.c3{fill:#c2255c}
circle.c4{fill:#7048e8}circle.c5{fill:#0c8599}
i.c0{background:#3b5bdb}i.c1{background:#e8590c}i.c2{background:#2b8a3e}i.c3{background:#c2255c}
i.c4{background:#7048e8}i.c5{background:#0c8599}
ul.markers{margin:4px 0;padding-left:1.2em;color:#c92a2a}
ol.regressions li{margin:3px 0;font:13px/1.4 ui-monospace,Menlo,Consolas,monospace;
overflow-wrap:anywhere}
table.causes,table.shapes,table.requests{border-collapse:collapse;width:100%;
font:13px/1.4 ui-monospace,Menlo,Consolas,monospace}
table.causes,table.shapes{table-layout:auto}
.causes th,.causes td,.shapes th,.shapes td,.requests th,.requests td{padding:3px 6px;
border-bottom:1px solid #e4e6ef;text-align:left;vertical-align:top}
.causes th,.shapes th,.requests th{background:#f3f4f8;font-weight:600}
.causes td.k,.shapes td.k{overflow-wrap:anywhere}
.causes td.k i{color:#68708a}.causes td.k .at{color:#68708a}
td.n,th.n{text-align:right;white-space:nowrap}
table.requests{table-layout:fixed}
.requests col.t{width:6em}.requests col.id{width:6.6em}.requests col.st{width:3.4em}
.requests col.ms{width:5em}.requests col.io{width:5em}.requests col.calls{width:3.6em}
.requests col.p{width:27%}
.requests td{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.requests th button{all:unset;cursor:pointer;display:block;width:100%}
.requests th button:focus-visible{outline:2px solid #3b5bdb}
.requests th[aria-sort=ascending] button::after{content:" ▲"}
.requests th[aria-sort=descending] button::after{content:" ▼"}
.requests tbody tr{cursor:pointer}
.requests tbody tr:hover,.requests tbody tr.current{background:#eef1fb}
.requests tr.e5 td.st{color:#b3001b;font-weight:600}
.requests td.c{color:#7a3e00}
a{color:#3b5bdb}
dialog#request{width:min(1200px,calc(100vw - 20px));max-width:none;
max-height:calc(100vh - 20px);padding:0;border:0;border-radius:6px;
box-shadow:0 8px 30px rgba(0,0,0,.3)}
dialog#request::backdrop{background:rgba(20,24,40,.45)}
dialog#request .bar{position:sticky;top:0;z-index:1;display:flex;gap:10px;align-items:center;
padding:8px 12px;background:#eef1fb;border-bottom:1px solid #c5cbe6}
dialog#request .bar h2{margin:0;font-size:14px;min-width:0;overflow:hidden;
text-overflow:ellipsis;white-space:nowrap;font-family:ui-monospace,Menlo,Consolas,monospace}
button#back{font:inherit;padding:4px 10px;border:1px solid #3b5bdb;border-radius:4px;
background:#fff;color:#3b5bdb;cursor:pointer;white-space:nowrap}
#request-body{padding:8px 12px 16px}
.req p.cause{margin:2px 0 6px;font-weight:600;color:#7a3e00;overflow-wrap:anywhere}
.req dl{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:1px 12px;
margin:0 0 8px;font-size:13px}
@media (max-width:640px){.req dl{grid-template-columns:max-content 1fr}}
.req dt{color:#68708a}.req dd{margin:0;overflow-wrap:anywhere}
#request-body .iop .body{overflow-x:visible;padding:4px 0}
#request-body .iop .l td:nth-child(n+6),#request-body .iop td.w,#request-body .iop ol.f li{
overflow-wrap:anywhere}
#request-body .iop .l td:nth-child(4){white-space:nowrap}
#request-body .iop .l td:nth-child(6),#request-body .iop td.w{min-width:10em}
#request-body .iop .l td:nth-child(7){min-width:8em}
#request-body .iop .l td:nth-child(3){width:90px;min-width:40px}
@media (max-width:900px){#request-body .iop .l td:nth-child(3),
#request-body .iop .l th:nth-child(3),#request-body .iop .l td:nth-child(2),
#request-body .iop .l th:nth-child(2){display:none}}
"""
    + PANEL_STYLE
)

SCRIPT = """(function(){
var dialog=document.getElementById("request"),body=document.getElementById("request-body"),
title=document.getElementById("request-title"),back=document.getElementById("back"),
list=document.querySelector("table.requests");
function current(id){var rows=list?list.tBodies[0].rows:[];for(var i=0;i<rows.length;i++)
rows[i].classList.toggle("current",rows[i].getAttribute("data-r")===id)}
function bars(box,total){var rows=box.querySelectorAll("table.l tr");
for(var i=1;i<rows.length;i++){var c=rows[i].cells;if(c.length<5)continue;
var at=parseFloat(c[1].textContent)||0,ms=parseFloat(c[4].textContent)||0,
bar=document.createElement("div"),b=document.createElement("i");bar.className="bar";
bar.appendChild(b);c[2].appendChild(bar);b.style.left=Math.min(100,at/total*100)+"%";
b.style.width=Math.min(100,ms/total*100)+"%"}}
function show(id){var t=id&&document.getElementById(id);
if(!t||t.tagName!=="TEMPLATE"){if(dialog.open)dialog.close();current(null);return}
body.replaceChildren(t.content.cloneNode(true));title.textContent=t.getAttribute("data-title");
bars(body,parseFloat(t.getAttribute("data-total"))||1);current(id);
if(!dialog.open)dialog.showModal();dialog.scrollTop=0;back.focus()}
function route(){show(location.hash.slice(1))}
function open(id){if(location.hash==="#"+id)return;history.pushState({r:id},"","#"+id);show(id)}
function leave(){if(history.state&&history.state.r)history.back();
else{history.replaceState(null,"",location.pathname+location.search);show(null)}}
window.addEventListener("popstate",route);window.addEventListener("hashchange",route);
back.addEventListener("click",leave);
dialog.addEventListener("cancel",function(e){e.preventDefault();leave()});
dialog.addEventListener("click",function(e){if(e.target===dialog){leave();return}
var a=e.target.closest("a[data-calls]");if(!a)return;e.preventDefault();var first=null;
body.querySelectorAll("tr.hl").forEach(function(r){r.classList.remove("hl")});
a.getAttribute("data-calls").split(" ").forEach(function(n){
var row=body.querySelector("table.l tr:nth-child("+(+n+1)+")");
if(row){row.classList.add("hl");first=first||row}});
if(first)first.scrollIntoView({block:"center"})});
document.addEventListener("click",function(e){if(dialog.contains(e.target))return;
var a=e.target.closest("a[href^='#r']"),row=e.target.closest("table.requests tbody tr");
var id=a?a.getAttribute("href").slice(1):row?row.getAttribute("data-r"):null;
if(id){e.preventDefault();open(id)}});
if(list){var heads=list.tHead.rows[0].cells;for(var k=0;k<heads.length;k++)(function(k){
var button=heads[k].querySelector("button");if(!button)return;
button.addEventListener("click",function(){var th=heads[k],
down=th.getAttribute("aria-sort")!=="descending",num=th.classList.contains("n"),
rows=Array.prototype.slice.call(list.tBodies[0].rows);
for(var h=0;h<heads.length;h++)heads[h].removeAttribute("aria-sort");
th.setAttribute("aria-sort",down?"descending":"ascending");
rows.sort(function(a,b){var x=a.cells[k].getAttribute("data-v"),y=b.cells[k].getAttribute("data-v");
var c=num?parseFloat(x)-parseFloat(y):(x<y?-1:x>y?1:0);return down?-c:c});
rows.forEach(function(r){list.tBodies[0].appendChild(r)})})})(k)}
route()})();"""
