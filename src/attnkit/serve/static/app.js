/*
 * The attnkit server's page: paste a text, see the label with its probabilities and the text with its tokens
 * highlighted per explanation method, plus the head view for models with self-attention.
 * Token highlighting, the legend and the head/model views come from the shared renderer (window.attnkit, the
 * package's explain/assets/attnkit-viz.js, served at assets/). Text from the server is inserted with
 * textContent only, never as HTML. No network access beyond this server.
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
    var viz = window.attnkit;
    var box = $("explanation");
    box.replaceChildren();
    exp.methods.forEach(function (method) {
      var kind = exp.signed[method] ? " (signed: red supports " + exp.target + ", blue speaks against it)" : "";
      var body = el("div");
      box.appendChild(el("div", { class: "method", "data-method": method }, [el("h3", { text: method + kind }), body]));
      viz.renderTokens(body, exp, method);
    });
    var layers = $("layers-view");
    layers.replaceChildren();
    if (exp.layers) viz.renderLayerViews(layers, exp);
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
    if (!window.attnkit) {
      $("model-info").textContent += " (the explanation renderer assets/attnkit-viz.js did not load)";
      return;
    }
    $("form").addEventListener("submit", submit);
    document.body.setAttribute("data-state", "ready");
  }

  init();
})();
