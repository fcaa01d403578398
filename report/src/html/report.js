"use strict";
(function () {
  var root = document.documentElement;
  window.addEventListener("error", function (e) {
    root.setAttribute("data-error", String(e.message || e));
  });
  var NS = "http://www.w3.org/2000/svg";
  var data = JSON.parse(document.getElementById("data").textContent);
  function human(b) {
    var u = ["kB", "MB", "GB", "TB"];
    if (b < 1000) return b + " B";
    var v = b / 1000, i = 0;
    while (v >= 999.95 && i < u.length - 1) { v /= 1000; i++; }
    return (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + " " + u[i];
  }
  function color(l) {
    if (l < 0) return "#9aa3ae";
    return "hsl(" + ((l * 137.508 + 210) % 360).toFixed(1) + ",58%,48%)";
  }
  // The treemap's colour: by layer, or by owning package (`#by=package` starts so).
  var byPackage = location.hash === "#by=package" && data.packages.length > 0;
  function fill(node) { return color(byPackage ? node.p : node.l); }
  function owner(node) {
    if (node.p >= 0) return "  " + data.packages[node.p];
    return "  no package";
  }
  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  var tip = document.getElementById("tip");
  function showTip(ev, text) {
    tip.textContent = text;
    tip.style.display = "block";
    tip.style.left = Math.min(ev.clientX + 12, window.innerWidth - 320) + "px";
    tip.style.top = (ev.clientY + 14) + "px";
  }
  function hideTip() { tip.style.display = "none"; }

  // Layer timeline: one bar per layer, bottom layer first.
  function timeline() {
    var layers = data.layers, W = 1100, rowH = 22, labelW = 70, barW = 360;
    var max = 1;
    layers.forEach(function (l) { max = Math.max(max, l.u); });
    var svg = el("svg", { width: W, height: layers.length * rowH + 10, id: "timeline-svg", role: "img" });
    svg.setAttribute("viewBox", "0 0 " + W + " " + (layers.length * rowH + 10));
    var defs = el("defs", {}, svg);
    var pat = el("pattern", { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" }, defs);
    el("rect", { width: 6, height: 6, fill: "#f2b8b6" }, pat);
    el("rect", { width: 3, height: 6, fill: "#d9534f" }, pat);
    layers.forEach(function (l, row) {
      var y = 5 + row * rowH;
      var g = el("g", { "class": "layer-row" }, svg);
      var label = el("text", { x: 4, y: y + 15, "class": l.base ? "base" : "" }, g);
      label.textContent = "#" + l.i + (l.base ? " base" : "");
      var scale = barW / max;
      var keep = l.final * scale, lost = l.shadowed * scale, total = Math.max(l.u * scale, keep + lost, 1);
      el("rect", { x: labelW, y: y + 3, width: total, height: rowH - 6, fill: "#c9ced6" }, g);
      el("rect", { x: labelW, y: y + 3, width: keep, height: rowH - 6, fill: color(l.i), "class": "keep" }, g);
      el("rect", { x: labelW + keep, y: y + 3, width: lost, height: rowH - 6, fill: "url(#hatch)", "class": "lost" }, g);
      var t = el("text", { x: labelW + barW + 10, y: y + 15 }, g);
      var ins = l.ins.length > 95 ? l.ins.slice(0, 94) + "\u2026" : l.ins;
      t.textContent = human(l.u) + "  " + (l.line ? "line " + l.line + ": " : "") + (ins || "-");
      g.addEventListener("mousemove", function (ev) {
        showTip(ev, "layer " + l.i + ": " + human(l.c) + " compressed, " + human(l.u) + " uncompressed, " +
          l.files + " files, " + human(l.final) + " in the final image, " + human(l.shadowed) + " wasted\n" + l.ins);
      });
      g.addEventListener("mouseleave", hideTip);
    });
    document.getElementById("timeline").appendChild(svg);
  }

  // Squarified treemap (Bruls, Huizing, van Wijk).
  function worst(row, sum, side) {
    var mx = 0, mn = Infinity;
    row.forEach(function (a) { mx = Math.max(mx, a); mn = Math.min(mn, a); });
    var s2 = sum * sum, w2 = side * side;
    return Math.max(w2 * mx / s2, s2 / (w2 * mn));
  }
  function squarify(items, x, y, w, h) {
    // items: [{node, area}] sorted by area, largest first. Returns [{node,x,y,w,h}].
    var out = [], row = [], rowAreas = [], sum = 0, i = 0;
    function place() {
      if (!row.length) return;
      if (w >= h) {
        var cw = sum / h, cy = y;
        row.forEach(function (it, k) { var ch = rowAreas[k] / cw; out.push({ node: it.node, x: x, y: cy, w: cw, h: ch }); cy += ch; });
        x += cw; w -= cw;
      } else {
        var rh = sum / w, cx = x;
        row.forEach(function (it, k) { var rw = rowAreas[k] / rh; out.push({ node: it.node, x: cx, y: y, w: rw, h: rh }); cx += rw; });
        y += rh; h -= rh;
      }
      row = []; rowAreas = []; sum = 0;
    }
    while (i < items.length) {
      var a = items[i].area, side = Math.min(w, h);
      if (!row.length || worst(rowAreas.concat([a]), sum + a, side) <= worst(rowAreas, sum, side)) {
        row.push(items[i]); rowAreas.push(a); sum += a; i++;
      } else {
        place();
      }
    }
    place();
    return out;
  }
  var W = 1200, H = 640, current = data.tree, stack = [];
  function draw() {
    var host = document.getElementById("treemap");
    host.textContent = "";
    var svg = el("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, id: "treemap-svg", role: "img" }, host);
    var count = 0;
    function layout(node, path, x, y, w, h, depth) {
      var kids = (node.c || []).filter(function (c) { return c.s > 0; });
      if (!kids.length || w < 3 || h < 3) {
        var r = el("rect", { x: x, y: y, width: Math.max(w, 0), height: Math.max(h, 0), fill: fill(node), "class": "tm" }, svg);
        r.setAttribute("data-path", path);
        r.setAttribute("data-layer", node.l);
        if (node.p >= 0) r.setAttribute("data-package", data.packages[node.p]);
        count++;
        r.addEventListener("mousemove", function (ev) {
          showTip(ev, path + "  " + human(node.s) + (node.l >= 0 ? "  layer " + node.l : "  several layers") + (data.packages.length ? owner(node) : ""));
        });
        r.addEventListener("mouseleave", hideTip);
        if (w > 70 && h > 16) {
          var t = el("text", { x: x + 3, y: y + 13 }, svg);
          var label = node.n + " " + human(node.s);
          t.textContent = label.length * 6.2 > w ? node.n.slice(0, Math.max(1, Math.floor(w / 6.2) - 1)) : label;
        }
        return;
      }
      var head = depth > 0 && h > 40 && w > 60 ? 14 : 0, pad = depth > 0 ? 1.5 : 0;
      var ix = x + pad, iy = y + pad + head, iw = w - 2 * pad, ih = h - 2 * pad - head;
      if (iw < 2 || ih < 2) { ix = x; iy = y; iw = w; ih = h; head = 0; }
      var total = 0;
      kids.forEach(function (c) { total += c.s; });
      var scale = iw * ih / total;
      var items = kids.map(function (c) { return { node: c, area: c.s * scale }; });
      squarify(items, ix, iy, iw, ih).forEach(function (r) {
        var p = (path === "/" ? "" : path) + "/" + r.node.n;
        layout(r.node, p, r.x, r.y, r.w, r.h, depth + 1);
      });
      if (depth > 0) {
        var frame = el("rect", { x: x, y: y, width: w, height: h, "class": "dir" }, svg);
        frame.setAttribute("data-path", path);
        frame.addEventListener("click", function () { stack.push(current); current = node; current._path = path; draw(); });
        frame.addEventListener("mousemove", function (ev) { showTip(ev, path + "/  " + human(node.s)); });
        frame.addEventListener("mouseleave", hideTip);
        if (head) {
          var t = el("text", { x: x + 3, y: y + 12, "class": "dirlabel" }, svg);
          var label = node.n + "/ " + human(node.s);
          t.textContent = label.length * 6.4 > w ? node.n.slice(0, Math.max(1, Math.floor(w / 6.4) - 1)) : label;
        }
      }
    }
    var start = current._path || "/";
    layout(current, start, 0, 0, W, H, 0);
    var crumbs = document.getElementById("crumbs");
    crumbs.textContent = "";
    var a = document.createElement("a");
    a.textContent = "/";
    a.addEventListener("click", function () { current = data.tree; stack = []; draw(); });
    crumbs.appendChild(a);
    if (start !== "/") crumbs.appendChild(document.createTextNode(" " + start + "  (" + human(current.s) + ")"));
    svg.setAttribute("data-leaves", count);
    svg.setAttribute("data-colour", byPackage ? "package" : "layer");
  }
  var toggle = document.getElementById("by-package");
  if (!data.packages.length) {
    document.getElementById("by-package-label").style.display = "none";
  }
  toggle.checked = byPackage;
  toggle.addEventListener("change", function () { byPackage = toggle.checked; draw(); });
  timeline();
  draw();
  root.setAttribute("data-ok", "1");
})();
