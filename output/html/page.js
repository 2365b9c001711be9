// The waterfall's filters and each connection's timeline. Text goes in
// with textContent only: nothing read from the export becomes markup.
(function () {
  "use strict";
  var timelines = JSON.parse(document.getElementById("timelines").textContent);
  var rows = Array.prototype.slice.call(document.querySelectorAll("#rows .conn"));
  var f = function (id) { return document.getElementById(id); };
  var inputs = ["f-flag", "f-outcome", "f-port", "f-peer", "f-process"].map(f);
  var all = f("f-all");

  function matches(el, flag, outcome, port, peer, proc) {
    var d = el.dataset;
    if (flag && d.flags.split(" ").indexOf(flag) < 0) return false;
    if (outcome && d.outcome !== outcome) return false;
    if (port && d.ports.split(" ").indexOf(port) < 0) return false;
    if (peer && d.peer.indexOf(peer) < 0) return false;
    if (proc && d.process.toLowerCase().indexOf(proc.toLowerCase()) < 0) return false;
    return true;
  }

  function filter() {
    var v = inputs.map(function (el) { return el ? el.value.trim() : ""; });
    var showAll = all && all.checked;
    document.body.classList.toggle("showall", !!showAll);
    var shown = 0, total = 0;
    rows.forEach(function (el) {
      var candidate = showAll || el.classList.contains("flagged");
      var ok = matches(el, v[0], v[1], v[2], v[3], v[4]);
      el.hidden = !ok;
      if (candidate) { total++; if (ok) shown++; }
    });
    f("shown").textContent = shown + " of " + total + " connections shown";
  }

  function show(el) {
    var t = timelines[el.dataset.id];
    if (!t) return;
    rows.forEach(function (r) { r.classList.remove("selected"); });
    el.classList.add("selected");
    var head = f("detail-head");
    head.textContent = "";
    t.h.forEach(function (line) {
      var p = document.createElement("p");
      p.textContent = line;
      head.appendChild(p);
    });
    var body = document.querySelector("#detail-table tbody");
    body.textContent = "";
    (t.r || []).forEach(function (cells) {
      var tr = document.createElement("tr");
      cells.forEach(function (c) {
        var td = document.createElement("td");
        td.textContent = c;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    f("detail").hidden = false;
  }

  inputs.concat([all]).forEach(function (el) {
    if (el) { el.addEventListener("input", filter); el.addEventListener("change", filter); }
  });
  f("rows").addEventListener("click", function (e) {
    var el = e.target.closest(".conn");
    if (el) show(el);
  });
  f("rows").addEventListener("keydown", function (e) {
    if (e.key === "Enter" && e.target.classList.contains("conn")) show(e.target);
  });
  f("detail-close").addEventListener("click", function () { f("detail").hidden = true; });
  filter();
})();
