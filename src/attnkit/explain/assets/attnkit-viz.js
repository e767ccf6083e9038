/*
 * attnkit-viz.js: browser renderers for attnkit explanation JSON (docs/explanation-format.md).
 * Plain ES2017, no dependencies, no build step, no network access. Pair it with attnkit-viz.css.
 *
 * Global API, window.attnkit:
 *
 *   renderTokens(container, explanation, method) -> container
 *       The original text with each token's background coloured by its `method` score. Replaces the
 *       container's content and adds the class "ak-text". Token spans are <span class="ak-tok" data-i data-score>;
 *       special tokens without a source span (e.g. [CLS]) are small "ak-special" chips; text between tokens is
 *       kept exactly as in the input.
 *
 *   renderHeadView(container, explanation, options?) -> {element, select(layer, head), focus(i, side), state}
 *       Attention lines from each token (left) to the tokens it attends to (right) for one layer and one head,
 *       or all heads overlaid in head colours; line opacity = weight. Lines are drawn for weights >= 0.01 (>= 0.001
 *       for a hovered token), at most the 4000 strongest. Hover a token to see only its lines and the weights;
 *       click to pin. `side` is "from" (query, left) or "to" (key, right).
 *       `head` is a 0-based index or "all". Needs explanation.layers (throws an Error otherwise).
 *       options.onChange(layer, head) is called when the user picks another layer or head.
 *
 *   renderModelView(container, explanation, options?) -> {element, highlight(layer, head)}
 *       A layers x heads grid of small attention heatmaps (rows: query token i, columns: key token j, shaded
 *       relative to each cell's maximum). options.onSelect(layer, head) is called when a cell is clicked.
 *
 *   renderLayerViews(container, explanation, options?) -> {headView, modelView}
 *       Head view and model view wired together: clicking a model-view cell opens it in the head view.
 *       options.modelViewFirst puts the model view on top.
 *
 *   renderExplanation(container, explanation) -> container
 *       Everything for one text: predicted label and probabilities, one highlighted row per method with a
 *       legend, and the head and model views when explanation.layers is present.
 *
 *   enhance(root)      Used by the standalone pages written by attnkit.explain.render: adds tooltips to the
 *                      server-rendered tokens and renders the layer views from the embedded JSON.
 *   loadData(root)     The explanations embedded in <script type="application/json" id="attnkit-data">.
 *   scaleOf(explanation, method) -> {kind, units, max_abs, total?, max_ratio?, concentration?, cap?, low, high}
 *   intensities(explanation, method) -> [t per token], intensityOf(scale, score) -> t
 *   intensityColor(t, kind) -> [r, g, b], textColor([r, g, b])
 *   renderLegend(explanation, method) -> element
 *                      The shared colour scale, the same formulas as attnkit.explain.scale (Python): attention
 *                      and rollout as the ratio to uniform (white at or below 1/T, full colour at RATIO_CAP x
 *                      uniform), signed methods diverging (red / blue) and other unsigned methods sequential,
 *                      both scaled to the text's max |score|. scaleOf equals the explanation JSON's `scale`.
 *
 * Every string from the explanation is inserted with textContent or setAttribute, never as HTML.
 */
(function () {
  "use strict";

  // The colour scale: keep equal to attnkit/explain/scale.py.
  var UNSIGNED_RGB = [230, 85, 13];
  var POSITIVE_RGB = [214, 39, 40];
  var NEGATIVE_RGB = [31, 119, 180];
  var RATIO_CAP = 8;
  var DISTRIBUTION_METHODS = ["attention", "rollout"];
  var KIND_LABELS = { ratio: "× uniform", diverging: "signed", sequential: "unsigned" };
  // Head view: lines drawn for weights at least this large (all tokens / one focused token), and at most.
  var MIN_WEIGHT = 0.01;
  var MIN_WEIGHT_FOCUSED = 0.001;
  var MAX_LINES = 4000;
  var HEAD_COLORS = [
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
  ];
  // The SVG namespace taken from the HTML parser, so that this file contains no URL at all.
  var SVG_NS = (function () {
    var probe = document.createElement("div");
    probe.innerHTML = "<svg></svg>";
    return probe.firstChild.namespaceURI;
  })();

  // ------------------------------------------------------------------------------------------ helpers

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    appendAll(node, children);
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, String(value));
    });
  }

  function appendAll(node, children) {
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function methodsOf(exp) {
    if (Array.isArray(exp.methods)) return exp.methods.map(String);
    var tokens = exp.tokens || [];
    return tokens.length ? Object.keys(tokens[0].scores || {}) : [];
  }

  function isSigned(exp, method) {
    return Boolean((exp.signed || {})[method]);
  }

  function scoreOf(token, method) {
    var value = (token.scores || {})[method];
    return typeof value === "number" && isFinite(value) ? value : null;
  }

  function scoresOf(exp, method) {
    return (exp.tokens || []).map(function (tok) {
      return scoreOf(tok, method);
    });
  }

  function exact(value) {
    return value === null || value === undefined ? "n/a" : String(value);
  }

  function css(rgb) {
    return "rgb(" + rgb[0] + ", " + rgb[1] + ", " + rgb[2] + ")";
  }

  function headColor(h, heads) {
    if (heads <= HEAD_COLORS.length) return HEAD_COLORS[h];
    // Evenly spaced hues for many heads (HSL with s = 0.65, l = 0.45, converted to RGB).
    var hue = h / heads, s = 0.65, l = 0.45;
    var q = l + s - l * s, p = 2 * l - q;
    function channel(t) {
      t = (t + 1) % 1;
      if (t < 1 / 6) return p + (q - p) * 6 * t;
      if (t < 1 / 2) return q;
      if (t < 2 / 3) return p + (q - p) * (2 / 3 - t) * 6;
      return p;
    }
    return [channel(hue + 1 / 3), channel(hue), channel(hue - 1 / 3)].map(function (c) {
      return Math.round(c * 255);
    });
  }

  // -------------------------------------------------------------------------------------- colour scale

  function scaleKind(method, signed) {
    if (signed) return "diverging";
    return DISTRIBUTION_METHODS.indexOf(method) >= 0 ? "ratio" : "sequential";
  }

  // toPrecision / toFixed round ties away from zero on the exact value; scale.py's compact / fixed do the same.
  function compact(value) {
    return String(Number(value.toPrecision(3)));
  }

  function scaleOf(exp, method) {
    var kind = scaleKind(method, isSigned(exp, method));
    var values = [];
    scoresOf(exp, method).forEach(function (v) {
      if (v !== null) values.push(kind === "diverging" ? v : Math.max(v, 0));
    });
    var units = values.length;
    var maxAbs = values.reduce(function (m, v) { return Math.max(m, Math.abs(v)); }, 0);
    var scale = { kind: kind, units: units, max_abs: maxAbs };
    if (kind === "ratio") {
      var total = 0;
      values.forEach(function (v) { total += v; });
      scale.total = total;
      scale.max_ratio = null;
      scale.concentration = null;
      scale.cap = RATIO_CAP;
      if (total > 0) {
        scale.max_ratio = maxAbs * units / total;
        if (units > 1) {
          var entropy = 0;
          values.forEach(function (v) {
            if (v > 0) entropy -= (v / total) * Math.log(v / total);
          });
          scale.concentration = Math.max(0, Math.min(1, 1 - entropy / Math.log(units)));
        } else scale.concentration = 0;
      }
    }
    scale.low = kind === "ratio" ? "×1 (uniform)" : kind === "diverging" ? "−" + compact(maxAbs) : "0";
    scale.high = kind === "ratio" ? "×" + compact(RATIO_CAP) + " of uniform"
      : kind === "diverging" ? "+" + compact(maxAbs) : compact(maxAbs);
    return scale;
  }

  function intensityOf(scale, score) {
    if (typeof score !== "number" || !isFinite(score)) return 0;
    if (scale.kind === "ratio") {
      if (!(scale.total > 0) || score <= 0) return 0;
      var ratio = score * scale.units / scale.total;
      if (ratio <= 1) return 0;
      return Math.min(Math.log(ratio) / Math.log(scale.cap), 1);
    }
    if (!(scale.max_abs > 0)) return 0;
    if (scale.kind === "sequential") return Math.min(Math.max(score, 0) / scale.max_abs, 1);
    return Math.max(-1, Math.min(score / scale.max_abs, 1));
  }

  function intensities(exp, method) {
    var scale = scaleOf(exp, method);
    return scoresOf(exp, method).map(function (v) { return intensityOf(scale, v); });
  }

  function summary(scale, target) {
    if (scale.kind === "ratio") {
      if (scale.max_ratio === null || scale.concentration === null) return "all weights are 0";
      return "no colour at or below uniform (1/" + scale.units + "); peak ×" + compact(scale.max_ratio) +
        " of uniform, concentration " + scale.concentration.toFixed(2) + " (0 = uniform, 1 = one token)";
    }
    if (scale.kind === "diverging") {
      return "red: supports " + target + " · blue: against it · scaled to this text's max |score|";
    }
    return "scaled to this text's max score";
  }

  function intensityColor(intensity, kind) {
    var diverging = kind === true || kind === "diverging";
    if (!isFinite(intensity)) intensity = 0;
    var base;
    if (diverging) base = intensity >= 0 ? POSITIVE_RGB : NEGATIVE_RGB;
    else {
      base = UNSIGNED_RGB;
      intensity = Math.max(intensity, 0);
    }
    var t = Math.min(Math.abs(intensity), 1);
    return base.map(function (c) {
      return Math.floor(255 + (c - 255) * t + 0.5);
    });
  }

  function luminance(rgb) {
    var lin = rgb.map(function (c) {
      var s = c / 255;
      return s <= 0.04045 ? s / 12.92 : Math.pow((s + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
  }

  function textColor(rgb) {
    var lum = luminance(rgb);
    return (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) ? [0, 0, 0] : [255, 255, 255];
  }

  // ------------------------------------------------------------------------------------------- tokens

  // Offsets count Unicode code points (Python string indices), so slice code points, not UTF-16 units.
  function segments(exp) {
    var chars = Array.from(exp.text || "");
    var n = chars.length;
    var out = [];
    var cursor = 0;
    (exp.tokens || []).forEach(function (tok, i) {
      var start = Math.min(Math.max(Number(tok.start) || 0, cursor), n);
      var end = Math.min(Math.max(Number(tok.end) || 0, start), n);
      if (start > cursor) out.push({ text: chars.slice(cursor, start).join(""), token: null, start: cursor, end: start });
      out.push({ text: chars.slice(start, end).join(""), token: i, start: start, end: end });
      cursor = end;
    });
    if (cursor < n) out.push({ text: chars.slice(cursor).join(""), token: null, start: cursor, end: n });
    return out;
  }

  // The character spans the model did not read: the JSON's "unread" (attnkit.explain.unread, the tokenizer's
  // own rule). Data without it (hand-made): every gap of a truncated text with a non-space character.
  function unreadSpans(exp) {
    if (!exp.truncated) return [];
    if (Array.isArray(exp.unread)) {
      return exp.unread.map(function (span) { return [Number(span[0]), Number(span[1])]; });
    }
    return segments(exp)
      .filter(function (seg) { return seg.token === null && /\S/.test(seg.text); })
      .map(function (seg) { return [seg.start, seg.end]; });
  }

  function tokenLabels(exp) {
    var chars = Array.from(exp.text || "");
    return (exp.tokens || []).map(function (tok) {
      var start = Number(tok.start), end = Number(tok.end);
      var span = start >= 0 && start < end && end <= chars.length ? chars.slice(start, end).join("") : "";
      var label = span.trim() ? span : String(tok.text || "") || span;
      label = label.replace(/\n/g, "⏎").replace(/\r/g, "").replace(/\t/g, " ");
      return label.trim() ? label : "␣";
    });
  }

  function renderTokens(container, exp, method) {
    clear(container);
    container.classList.add("ak-text");
    var signed = isSigned(exp, method);
    var scores = scoresOf(exp, method);
    var shade = intensities(exp, method);
    var labels = tokenLabels(exp);
    var unread = unreadSpans(exp);
    segments(exp).forEach(function (seg) {
      if (seg.token === null) {
        // Unread text of a truncated input (the tail, or head+tail's middle), as the JSON's spans say.
        var grey = unread.some(function (span) { return span[0] < seg.end && seg.start < span[1]; });
        container.appendChild(el("span", { class: grey ? "ak-gap ak-unscored" : "ak-gap", text: seg.text }));
        return;
      }
      var i = seg.token;
      var bg = intensityColor(shade[i], signed);
      var node = el("span", {
        class: seg.text ? "ak-tok" : "ak-tok ak-special",
        "data-i": i,
        "data-score": exact(scores[i]),
        "data-tip": labels[i] + " · " + method + " = " + exact(scores[i]),
        text: seg.text || labels[i],
      });
      node.style.backgroundColor = css(bg);
      node.style.color = css(textColor(bg));
      container.appendChild(node);
    });
    installTooltips(container.ownerDocument || document);
    return container;
  }

  function gradient(kind) {
    var stops = kind === "diverging" ? [NEGATIVE_RGB, [255, 255, 255], POSITIVE_RGB] : [[255, 255, 255], UNSIGNED_RGB];
    return "linear-gradient(to right, " + stops.map(css).join(", ") + ")";
  }

  // The same markup as attnkit.explain.render.legend_html.
  function renderLegend(exp, method) {
    var scale = scaleOf(exp, method);
    var target = String(exp.target === undefined ? (exp.label === undefined ? "" : exp.label) : exp.target);
    var bar = el("span", { class: "ak-legend-bar" });
    bar.style.background = gradient(scale.kind);
    return el("div", { class: "ak-legend ak-legend-" + scale.kind, "data-kind": scale.kind }, [
      el("span", { class: "ak-legend-end ak-legend-low", text: scale.low }),
      bar,
      el("span", { class: "ak-legend-end ak-legend-high", text: scale.high }),
      el("span", { class: "ak-legend-note", text: summary(scale, target) }),
    ]);
  }

  // ------------------------------------------------------------------------------------------ tooltip

  var tooltipDocs = typeof WeakSet === "function" ? new WeakSet() : null;

  function tooltipFor(doc) {
    var tip = doc.querySelector(".ak-tooltip");
    if (!tip) {
      tip = doc.createElement("div");
      tip.className = "ak-tooltip";
      tip.setAttribute("role", "tooltip");
      doc.body.appendChild(tip);
    }
    return tip;
  }

  function showTip(doc, text, x, y) {
    var tip = tooltipFor(doc);
    tip.textContent = text;
    tip.style.display = "block";
    var width = tip.offsetWidth, height = tip.offsetHeight;
    var view = doc.documentElement;
    var left = Math.min(x + 12, view.clientWidth - width - 4);
    var top = y + 16 + height > view.clientHeight ? y - height - 8 : y + 16;
    tip.style.left = Math.max(4, left) + "px";
    tip.style.top = Math.max(4, top) + "px";
  }

  function hideTip(doc) {
    var tip = doc.querySelector(".ak-tooltip");
    if (tip) tip.style.display = "none";
  }

  function peerScope(node) {
    return node.closest(".ak-explanation") || node.closest(".ak-text") || node.parentNode;
  }

  function installTooltips(doc) {
    if (tooltipDocs) {
      if (tooltipDocs.has(doc)) return;
      tooltipDocs.add(doc);
    } else if (doc.__attnkitTips) return;
    else doc.__attnkitTips = true;
    doc.addEventListener("mouseover", function (event) {
      var tok = event.target.closest && event.target.closest(".ak-tok");
      if (!tok) return;
      var text = tok.getAttribute("data-tip") || tok.getAttribute("title");
      if (text) showTip(doc, text, event.clientX, event.clientY);
      var scope = peerScope(tok);
      scope.querySelectorAll('.ak-tok[data-i="' + tok.getAttribute("data-i") + '"]').forEach(function (peer) {
        peer.classList.add("ak-peer");
      });
    });
    doc.addEventListener("mouseout", function (event) {
      var tok = event.target.closest && event.target.closest(".ak-tok");
      if (!tok) return;
      hideTip(doc);
      peerScope(tok).querySelectorAll(".ak-peer").forEach(function (peer) {
        peer.classList.remove("ak-peer");
      });
    });
  }

  // ---------------------------------------------------------------------------------------- head view

  function attentionOf(exp) {
    var attention = exp && exp.layers && exp.layers.attention;
    if (!Array.isArray(attention) || !attention.length || !attention[0].length) {
      throw new Error("attnkit: this explanation has no attention layers (layers is null)");
    }
    return attention;
  }

  function selectBox(cls, label, options, value) {
    var select = el("select", { class: cls, "aria-label": label });
    options.forEach(function (opt) {
      select.appendChild(el("option", { value: opt[0], text: opt[1] }));
    });
    select.value = String(value);
    return el("label", { class: "ak-control" }, [label + " ", select]);
  }

  function renderHeadView(container, exp, options) {
    options = options || {};
    var A = attentionOf(exp);
    var L = A.length, H = A[0].length, n = A[0][0].length;
    var labels = tokenLabels(exp);
    for (var extra = labels.length; extra < n; extra++) labels.push("#" + extra);
    var shortLabels = labels.map(function (s) {
      return s.length > 18 ? s.slice(0, 17) + "…" : s;
    });
    var state = { layer: 0, head: 0, focus: null, side: "from", pinned: false };

    var rowH = 20, top = 30;
    var longest = shortLabels.reduce(function (m, s) { return Math.max(m, s.length); }, 1);
    var labelW = Math.min(170, Math.max(50, longest * 8 + 14));
    var gap = 170, weightW = 48;
    var leftX = weightW + labelW, rightX = leftX + gap;
    var width = rightX + labelW + weightW, height = top + n * rowH + 6;

    clear(container);
    var root = el("div", { class: "ak-headview" });
    var layerBox = selectBox("ak-hv-layer", "Layer", A.map(function (_, l) { return [l, String(l + 1)]; }), 0);
    var headOptions = [["all", "all heads"]].concat(A[0].map(function (_, h) { return [h, String(h + 1)]; }));
    var headBox = selectBox("ak-hv-head", "Head", headOptions, 0);
    var chips = el("span", { class: "ak-hv-chips" });
    for (var h = 0; h < H; h++) {
      var chip = el("button", { type: "button", class: "ak-hv-chip", "data-head": h, title: "head " + (h + 1), text: String(h + 1) });
      chip.style.backgroundColor = css(headColor(h, H));
      chips.appendChild(chip);
    }
    var hint = el("span", { class: "ak-hint", text: "hover a token to see its attention, click to pin" });
    var status = el("div", { class: "ak-hint ak-hv-status" });
    var controls = el("div", { class: "ak-controls" }, [layerBox, headBox, chips, hint]);
    var canvas = svg("svg", {
      class: "ak-hv-svg", width: width, height: height, viewBox: "0 0 " + width + " " + height,
      role: "img", "aria-label": "attention between tokens",
    });
    var lineLayer = svg("g", { class: "ak-hv-lines" });
    var barLayer = svg("g", { class: "ak-hv-bars" });
    var labelLayer = svg("g", { class: "ak-hv-labels" });
    canvas.appendChild(barLayer);
    canvas.appendChild(lineLayer);
    canvas.appendChild(labelLayer);
    var heading = function (x, anchor, text) {
      var t = svg("text", { x: x, y: 16, "text-anchor": anchor, class: "ak-hv-heading" });
      t.textContent = text;
      labelLayer.appendChild(t);
    };
    heading(leftX - 6, "end", "from (query)");
    heading(rightX + 6, "start", "to (key)");

    function y(i) {
      return top + i * rowH + rowH / 2;
    }

    var leftLabels = [], rightLabels = [];
    for (var i = 0; i < n; i++) {
      ["from", "to"].forEach(function (side) {
        var left = side === "from";
        var group = svg("g", { class: "ak-hv-token ak-hv-" + side, "data-i": i, "data-side": side });
        var hit = svg("rect", {
          class: "ak-hv-hit", x: left ? weightW : rightX, y: top + i * rowH, width: labelW, height: rowH,
        });
        var text = svg("text", {
          x: left ? leftX - 6 : rightX + 6, y: y(i) + 4, "text-anchor": left ? "end" : "start",
        });
        text.textContent = shortLabels[i];
        var title = svg("title", {});
        title.textContent = labels[i];
        group.appendChild(hit);
        group.appendChild(text);
        group.appendChild(title);
        labelLayer.appendChild(group);
        (left ? leftLabels : rightLabels).push(group);
        var index = i;
        group.addEventListener("mouseenter", function () {
          if (!state.pinned) focus(index, side);
        });
        group.addEventListener("mouseleave", function () {
          if (!state.pinned) focus(null);
        });
        group.addEventListener("click", function () {
          if (state.pinned && state.focus === index && state.side === side) {
            state.pinned = false;
            focus(null);
          } else {
            state.pinned = true;
            focus(index, side);
          }
        });
      });
    }

    var scroller = el("div", { class: "ak-hv-scroll" });
    scroller.appendChild(canvas);
    root.appendChild(controls);
    root.appendChild(scroller);
    root.appendChild(status);
    container.appendChild(root);

    function heads() {
      if (state.head === "all") return A[state.layer].map(function (_, h) { return h; });
      return [state.head];
    }

    function draw() {
      clear(lineLayer);
      clear(barLayer);
      canvas.setAttribute("data-layer", state.layer);
      canvas.setAttribute("data-head", state.head);
      canvas.setAttribute("data-focus", state.focus === null ? "" : state.focus);
      var visible = heads();
      var focused = state.focus !== null;
      var minWeight = focused ? MIN_WEIGHT_FOCUSED : MIN_WEIGHT;
      var candidates = [];
      var total = 0;
      visible.forEach(function (h) {
        var M = A[state.layer][h];
        for (var i = 0; i < n; i++) {
          if (focused && state.side === "from" && i !== state.focus) continue;
          for (var j = 0; j < n; j++) {
            if (focused && state.side === "to" && j !== state.focus) continue;
            total++;
            var w = M[i][j];
            if (w >= minWeight) candidates.push([w, h, i, j]);
          }
        }
      });
      var shown = candidates;
      if (shown.length > MAX_LINES) {
        shown = candidates.slice().sort(function (a, b) { return b[0] - a[0]; }).slice(0, MAX_LINES);
      }
      var frag = document.createDocumentFragment();
      shown.forEach(function (c) {
        frag.appendChild(svg("line", {
          class: "ak-hv-line", x1: leftX, y1: y(c[2]), x2: rightX, y2: y(c[3]), stroke: css(headColor(c[1], H)),
          "stroke-opacity": Math.min(1, c[0]).toFixed(3), "stroke-width": 2,
          "data-head": c[1], "data-from": c[2], "data-to": c[3], "data-weight": c[0],
        }));
      });
      status.textContent = shown.length + " of " + total + " lines (weights ≥ " + minWeight + ")" +
        (shown.length < candidates.length ? ", only the " + MAX_LINES + " strongest drawn" : "") +
        (shown.length === 0 && !focused ? ": no weight is that large here, hover a token to see its weights" : "");
      lineLayer.appendChild(frag);
      leftLabels.concat(rightLabels).forEach(function (g) {
        var active = focused && Number(g.getAttribute("data-i")) === state.focus && g.getAttribute("data-side") === state.side;
        g.classList.toggle("ak-hv-active", active);
      });
      if (focused) drawWeights(visible);
    }

    // Bars (one thin bar per visible head) behind the tokens on the other side, and the weight when one head.
    function drawWeights(visible) {
      var other = state.side === "from" ? "to" : "from";
      for (var k = 0; k < n; k++) {
        visible.forEach(function (h, slot) {
          var M = A[state.layer][h];
          var w = state.side === "from" ? M[state.focus][k] : M[k][state.focus];
          var barH = (rowH - 4) / visible.length;
          var x = other === "to" ? rightX : leftX - labelW * w;
          var bar = svg("rect", {
            class: "ak-hv-bar", x: x, y: top + k * rowH + 2 + slot * barH, width: Math.max(0, labelW * w), height: barH,
            fill: css(headColor(h, H)), "fill-opacity": 0.35, "data-head": h, "data-i": k,
          });
          barLayer.appendChild(bar);
        });
        if (visible.length === 1) {
          var M1 = A[state.layer][visible[0]];
          var w1 = state.side === "from" ? M1[state.focus][k] : M1[k][state.focus];
          var t = svg("text", {
            class: "ak-hv-weight", "data-i": k, y: y(k) + 4,
            x: other === "to" ? rightX + labelW + 4 : weightW - 4, "text-anchor": other === "to" ? "start" : "end",
          });
          t.textContent = w1.toFixed(3);
          barLayer.appendChild(t);
        }
      }
    }

    function focus(i, side) {
      state.focus = i === null || i === undefined ? null : Number(i);
      if (side) state.side = side;
      if (state.focus === null) state.pinned = false;
      draw();
    }

    function select(layer, head) {
      state.layer = Math.max(0, Math.min(L - 1, Number(layer) || 0));
      state.head = head === "all" ? "all" : Math.max(0, Math.min(H - 1, Number(head) || 0));
      layerBox.querySelector("select").value = String(state.layer);
      headBox.querySelector("select").value = String(state.head);
      chips.querySelectorAll(".ak-hv-chip").forEach(function (c) {
        c.classList.toggle("ak-selected", state.head === "all" || Number(c.getAttribute("data-head")) === state.head);
      });
      draw();
    }

    function changed() {
      select(layerBox.querySelector("select").value, headBox.querySelector("select").value);
      if (options.onChange) options.onChange(state.layer, state.head);
    }
    layerBox.querySelector("select").addEventListener("change", changed);
    headBox.querySelector("select").addEventListener("change", changed);
    chips.addEventListener("click", function (event) {
      var chip = event.target.closest(".ak-hv-chip");
      if (!chip) return;
      var h = Number(chip.getAttribute("data-head"));
      headBox.querySelector("select").value = state.head === h ? "all" : String(h);
      changed();
    });

    select(0, 0);
    return { element: root, select: select, focus: focus, state: state };
  }

  // --------------------------------------------------------------------------------------- model view

  function renderModelView(container, exp, options) {
    options = options || {};
    var A = attentionOf(exp);
    var L = A.length, H = A[0].length, n = A[0][0].length;
    var labels = tokenLabels(exp);
    clear(container);
    var root = el("div", { class: "ak-modelview" });
    root.appendChild(el("div", {
      class: "ak-hint",
      text: "rows: layers, columns: heads; each cell is token i (row) attending to token j (column), " +
        "shaded relative to the cell's maximum. Click a cell to open it in the head view.",
    }));
    var grid = el("div", { class: "ak-mv-grid" });
    grid.style.gridTemplateColumns = "auto repeat(" + H + ", max-content)";
    grid.appendChild(el("div", { class: "ak-mv-corner" }));
    for (var h = 0; h < H; h++) grid.appendChild(el("div", { class: "ak-mv-colhead", text: "head " + (h + 1) }));
    var cells = [];
    for (var l = 0; l < L; l++) {
      grid.appendChild(el("div", { class: "ak-mv-rowhead", text: "layer " + (l + 1) }));
      for (h = 0; h < H; h++) {
        var cell = el("button", {
          type: "button", class: "ak-mv-cell", "data-layer": l, "data-head": h,
          title: "layer " + (l + 1) + ", head " + (h + 1),
        });
        var canvas = el("canvas", { width: n, height: n, class: "ak-mv-canvas" });
        paint(canvas, A[l][h], headColor(h, H));
        cell.appendChild(canvas);
        grid.appendChild(cell);
        cells.push(cell);
        attachCell(cell, canvas, l, h);
      }
    }
    root.appendChild(grid);
    container.appendChild(root);

    function paint(canvas, M, rgb) {
      var ctx = canvas.getContext && canvas.getContext("2d");
      if (!ctx || !n) return;
      var peak = 0;
      for (var i = 0; i < n; i++) for (var j = 0; j < n; j++) if (M[i][j] > peak) peak = M[i][j];
      var image = ctx.createImageData(n, n);
      for (i = 0; i < n; i++) {
        for (j = 0; j < n; j++) {
          var t = peak > 0 ? Math.max(0, M[i][j]) / peak : 0;
          var o = (i * n + j) * 4;
          image.data[o] = Math.round(255 + (rgb[0] - 255) * t);
          image.data[o + 1] = Math.round(255 + (rgb[1] - 255) * t);
          image.data[o + 2] = Math.round(255 + (rgb[2] - 255) * t);
          image.data[o + 3] = 255;
        }
      }
      ctx.putImageData(image, 0, 0);
    }

    function attachCell(cell, canvas, l, h) {
      var doc = container.ownerDocument || document;
      cell.addEventListener("click", function () {
        highlight(l, h);
        if (options.onSelect) options.onSelect(l, h);
      });
      canvas.addEventListener("mousemove", function (event) {
        var box = canvas.getBoundingClientRect();
        var j = Math.min(n - 1, Math.floor(((event.clientX - box.left) / box.width) * n));
        var i = Math.min(n - 1, Math.floor(((event.clientY - box.top) / box.height) * n));
        if (i < 0 || j < 0) return;
        showTip(doc, "layer " + (l + 1) + ", head " + (h + 1) + ": " + labels[i] + " → " + labels[j] +
          " = " + A[l][h][i][j].toFixed(4), event.clientX, event.clientY);
      });
      canvas.addEventListener("mouseleave", function () { hideTip(doc); });
    }

    function highlight(layer, head) {
      cells.forEach(function (c) {
        var on = Number(c.getAttribute("data-layer")) === Number(layer) &&
          (head === "all" || Number(c.getAttribute("data-head")) === Number(head));
        c.classList.toggle("ak-selected", on);
      });
    }

    return { element: root, highlight: highlight };
  }

  function renderLayerViews(container, exp, options) {
    options = options || {};
    clear(container);
    var headBox = el("section", { class: "ak-view ak-view-head" }, [el("h3", { text: "Head view" })]);
    var headHost = el("div");
    headBox.appendChild(headHost);
    var modelBox = el("section", { class: "ak-view ak-view-model" }, [el("h3", { text: "Model view" })]);
    var modelHost = el("div");
    modelBox.appendChild(modelHost);
    if (options.modelViewFirst) appendAll(container, [modelBox, headBox]);
    else appendAll(container, [headBox, modelBox]);
    var modelView = null;
    var headView = renderHeadView(headHost, exp, {
      onChange: function (l, h) { if (modelView) modelView.highlight(l, h); },
    });
    modelView = renderModelView(modelHost, exp, {
      onSelect: function (l, h) {
        headView.select(l, h);
        if (headBox.scrollIntoView) headBox.scrollIntoView({ block: "nearest" });
      },
    });
    modelView.highlight(0, 0);
    return { headView: headView, modelView: modelView };
  }

  // -------------------------------------------------------------------------------------- explanation

  function header(exp, number) {
    var label = String(exp.label === undefined ? "?" : exp.label);
    var target = String(exp.target === undefined ? label : exp.target);
    var probs = Object.keys(exp.probabilities || {}).map(function (k) {
      return [k, Number(exp.probabilities[k])];
    }).sort(function (a, b) { return b[1] - a[1]; });
    var table = el("table", { class: "ak-probs" });
    probs.forEach(function (kv) {
      var bar = el("span");
      bar.style.width = (Math.max(0, Math.min(kv[1], 1)) * 100).toFixed(1) + "%";
      table.appendChild(el("tr", {}, [
        el("th", { scope: "row", text: kv[0] }),
        el("td", { class: "ak-prob-bar" }, [bar]),
        el("td", { class: "ak-prob-value", text: kv[1].toFixed(3) }),
      ]));
    });
    var meta = el("div", { class: "ak-meta" }, ["target ", el("b", { class: "ak-target", text: target })]);
    if (exp.truncated) {
      appendAll(meta, [" · ", el("span", {
        class: "ak-truncated", text: "truncated: only the scored tokens were read; the rest of the text is grey",
      })]);
    }
    return el("header", { class: "ak-header" }, [
      el("h2", { class: "ak-title" }, [
        (number ? "#" + number + " " : "") + "predicted ", el("span", { class: "ak-label", text: label }),
      ]),
      meta,
      table,
    ]);
  }

  function renderExplanation(container, exp, options) {
    options = options || {};
    clear(container);
    var section = el("section", { class: "ak-explanation" });
    section.appendChild(header(exp, options.number));
    var rows = el("div", { class: "ak-methods" });
    methodsOf(exp).forEach(function (method) {
      var signed = isSigned(exp, method);
      var text = el("div");
      renderTokens(text, exp, method);
      var kind = KIND_LABELS[scaleKind(method, signed)];
      rows.appendChild(el("div", { class: "ak-method", "data-method": method, "data-signed": String(signed) }, [
        el("div", { class: "ak-method-name" }, [method + " ", el("span", { class: "ak-kind", text: kind })]),
        text,
        renderLegend(exp, method),
      ]));
    });
    section.appendChild(rows);
    if (exp.layers) {
      var views = el("div", { class: "ak-layers" });
      section.appendChild(views);
      renderLayerViews(views, exp);
    }
    container.appendChild(section);
    return container;
  }

  // ------------------------------------------------------------------------------ standalone pages

  function loadData(root) {
    var doc = root && root.ownerDocument ? root.ownerDocument : root || document;
    var node = doc.getElementById("attnkit-data");
    return node ? JSON.parse(node.textContent) : [];
  }

  function enhance(root) {
    root = root || document;
    var doc = root.ownerDocument || root;
    installTooltips(doc);
    root.querySelectorAll(".ak-tok[title]").forEach(function (tok) {
      tok.setAttribute("data-tip", tok.getAttribute("title"));
      tok.removeAttribute("title");
    });
    var data = loadData(doc);
    root.querySelectorAll("[data-ak-views]").forEach(function (host) {
      var exp = data[Number(host.getAttribute("data-ak-views"))];
      if (exp && exp.layers) renderLayerViews(host, exp);
    });
  }

  window.attnkit = {
    renderTokens: renderTokens,
    renderHeadView: renderHeadView,
    renderModelView: renderModelView,
    renderLayerViews: renderLayerViews,
    renderExplanation: renderExplanation,
    enhance: enhance,
    loadData: loadData,
    renderLegend: renderLegend,
    scaleOf: scaleOf,
    intensities: intensities,
    intensityOf: intensityOf,
    intensityColor: intensityColor,
    textColor: textColor,
    segments: segments,
  };
})();
