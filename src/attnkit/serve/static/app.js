/*
 * The attnkit server's page: paste a text, see the label with its probabilities and the text with its tokens
 * highlighted per explanation method, plus the head view for models with self-attention.
 * Token highlighting and the head view use the shared renderer (window.attnkit from attnkit-viz.js) when the
 * server ships it (GET model -> "renderer"); otherwise the small fallbacks below. Text from the server is
 * inserted with textContent only, never as HTML. No network access beyond this server.
 */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var model = null;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k]; else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }

  async function call(path, body) {
    var response = await fetch(path, body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    var data = await response.json();
    if (!response.ok) throw new Error(data.detail || data.error || ("HTTP " + response.status));
    return data;
  }

  function loadRenderer(src) {
    return new Promise(function (resolve) {
      document.head.appendChild(el("link", { rel: "stylesheet", href: src.replace(/\.js$/, ".css") }));
      var script = el("script", { src: src });
      script.onload = resolve;
      script.onerror = resolve;  // fall back to the page's own rendering
      document.head.appendChild(script);
    });
  }

  // -- fallbacks (used only without the shared renderer) ---------------------------------------------------

  function tokenColor(score, scale, signed) {
    var a = scale > 0 ? Math.min(1, Math.abs(score) / scale) : 0;
    var rgb = signed && score < 0 ? "200, 40, 40" : signed ? "30, 140, 60" : "230, 120, 20";
    return "rgba(" + rgb + ", " + (0.85 * a).toFixed(3) + ")";
  }

  function renderTokens(container, exp, method) {
    var signed = exp.signed[method];
    var scores = exp.tokens.map(function (t) { return t.scores[method]; });
    var scale = Math.max.apply(null, scores.map(Math.abs).concat([0]));
    var text = el("div", { class: "tokens" });
    var cursor = 0;
    exp.tokens.forEach(function (t, i) {
      if (t.start > cursor) text.appendChild(document.createTextNode(exp.text.slice(cursor, t.start)));
      var span = el("span", { class: "ak-tok", "data-i": String(i), "data-score": String(t.scores[method]),
        title: method + ": " + t.scores[method], text: exp.text.slice(t.start, t.end) });
      span.style.background = tokenColor(t.scores[method], scale, signed);
      text.appendChild(span);
      cursor = Math.max(cursor, t.end);
    });
    text.appendChild(document.createTextNode(exp.text.slice(cursor)));
    container.appendChild(text);
  }

  function renderHeads(container, exp) {
    var maps = exp.layers.attention;  // [layer][head][i][j]
    var layer = el("select", { id: "layer-select", "aria-label": "layer" });
    var head = el("select", { id: "head-select", "aria-label": "head" });
    maps.forEach(function (_, l) { layer.appendChild(el("option", { value: String(l), text: "layer " + l })); });
    maps[0].forEach(function (_, h) { head.appendChild(el("option", { value: String(h), text: "head " + h })); });
    var grid = el("div");
    function draw() {
      var m = maps[Number(layer.value)][Number(head.value)];
      var table = el("table", { class: "heat" });
      table.appendChild(el("tr", {}, [el("th")].concat(exp.tokens.map(function (t) { return el("th", { text: t.text }); }))));
      m.forEach(function (row, i) {
        table.appendChild(el("tr", {}, [el("th", { text: exp.tokens[i].text })].concat(row.map(function (w) {
          var td = el("td", { title: w.toFixed(3) });
          td.style.background = "rgba(74, 123, 208, " + w.toFixed(3) + ")";
          return td;
        }))));
      });
      grid.replaceChildren(table);
    }
    layer.onchange = draw;
    head.onchange = draw;
    container.appendChild(el("div", { class: "heads" }, [
      el("h3", { text: "Head view: where each token (row) attends (columns)" }), layer, head, grid]));
    draw();
  }

  // -- the page ----------------------------------------------------------------------------------------------

  function showPrediction(prediction) {
    $("label").textContent = prediction.label;
    var box = $("probabilities");
    box.replaceChildren();
    Object.keys(prediction.probabilities).forEach(function (name) {
      var p = prediction.probabilities[name];
      var bar = el("span", { class: "bar" });
      bar.style.width = (p * 20).toFixed(2) + "rem";
      box.appendChild(el("div", { class: "prob" + (name === prediction.label ? " top" : ""), "data-label": name }, [
        el("span", { class: "name", text: name }), bar, el("span", { class: "value", text: (100 * p).toFixed(1) + "%" }),
      ]));
    });
  }

  function showExplanation(exp) {
    var box = $("explanation");
    box.replaceChildren();
    var shared = window.attnkit && window.attnkit.renderTokens;
    exp.methods.forEach(function (method) {
      var row = el("div", { class: "method", "data-method": method }, [
        el("h3", { text: method + (exp.signed[method] ? " (signed: green for, red against " + exp.target + ")" : "") }),
      ]);
      var body = el("div");
      row.appendChild(body);
      box.appendChild(row);
      if (shared) window.attnkit.renderTokens(body, exp, method); else renderTokens(body, exp, method);
    });
    var layers = $("layers-view");
    layers.replaceChildren();
    if (exp.layers) {
      if (window.attnkit && window.attnkit.renderLayerViews) window.attnkit.renderLayerViews(layers, exp);
      else renderHeads(layers, exp);
    }
  }

  async function submit(event) {
    event.preventDefault();
    var text = $("text").value;
    var methods = Array.prototype.map.call(document.querySelectorAll("#methods input:checked"), function (b) { return b.value; });
    $("error").hidden = true;
    $("submit").disabled = true;
    try {
      showPrediction(await call("predict", { text: text }));
      $("result").hidden = false;
      $("explanation").replaceChildren();
      $("layers-view").replaceChildren();
      if (methods.length) {
        var layers = model.self_attention && $("layers").checked;
        showExplanation(await call("explain", { text: text, methods: methods, layers: layers }));
      }
      document.body.setAttribute("data-state", "done");
    } catch (err) {
      $("error").textContent = err.message;
      $("error").hidden = false;
      document.body.setAttribute("data-state", "error");
    } finally {
      $("submit").disabled = false;
    }
  }

  async function init() {
    try {
      model = await call("model");
    } catch (err) {
      $("model-info").textContent = "could not load the model: " + err.message;
      return;
    }
    var acc = model.metrics && model.metrics.test ? ", test accuracy " + (100 * model.metrics.test.accuracy).toFixed(1) + "%" : "";
    $("model-info").textContent = model.model + " (" + model.backend + " backend), labels: " + model.labels.join(", ") + acc;
    model.methods.forEach(function (m) {
      var box = el("input", { type: "checkbox", value: m, id: "method-" + m });
      box.checked = m === "attention";
      $("methods").appendChild(el("label", {}, [box, " " + m]));
    });
    $("layers-option").hidden = !model.self_attention;
    if (model.renderer) await loadRenderer(model.renderer);
    $("form").addEventListener("submit", submit);
    document.body.setAttribute("data-state", "ready");
  }

  init();
})();
