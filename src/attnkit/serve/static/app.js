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
    var response;
    var headers = {};
    var key = $("api-key").value.trim();
    if (key) headers["X-API-Key"] = key;  // servers started with an API key answer 401 without it
    if (body !== undefined) headers["Content-Type"] = "application/json";
    try {
      response = await fetch(path, body === undefined ? { headers: headers } : {
        method: "POST", headers: headers, body: JSON.stringify(body),
      });
    } catch (err) {
      throw new Error("could not reach the server (" + err.message + ")");
    }
    var data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;  // e.g. an HTML error page from a proxy
    }
    if (response.status === 401) {
      $("key-option").hidden = false;
      throw new Error("this server needs an API key: enter it above (HTTP 401)");
    }
    if (!response.ok) {
      var detail = data && (data.detail || data.error);
      throw new Error((detail ? String(detail) : "no details") + " (HTTP " + response.status + ")");
    }
    if (data === null) throw new Error("the server's answer was not JSON");
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

  // Each method's highlighted text with its colour legend (the shared renderer's, as on the offline pages).
  function showExplanation(exp) {
    var viz = window.attnkit;
    var box = $("explanation");
    box.replaceChildren();
    exp.methods.forEach(function (method) {
      var body = el("div");
      box.appendChild(el("div", { class: "method", "data-method": method }, [
        el("h3", { text: method }), body, viz.renderLegend(exp, method),
      ]));
      viz.renderTokens(body, exp, method);
    });
    var layers = $("layers-view");
    layers.replaceChildren();
    if (exp.layers) viz.renderLayerViews(layers, exp);
  }

  function clearPrediction() {
    $("result").hidden = true;
    $("label").textContent = "";
    $("probabilities").replaceChildren();
  }

  function clearExplanation() {
    $("explanation").replaceChildren();
    $("layers-view").replaceChildren();
  }

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = false;
    document.body.setAttribute("data-state", "error");
  }

  // Nothing of an earlier text stays on screen: the result is cleared before each request, and a failed step
  // leaves only what this text got (the label when only the explanation failed) and says which step failed.
  async function submit(event) {
    event.preventDefault();
    var text = $("text").value;
    var methods = Array.prototype.map.call(document.querySelectorAll("#methods input:checked"), function (b) { return b.value; });
    $("error").hidden = true;
    $("error").textContent = "";
    clearPrediction();
    clearExplanation();
    document.body.setAttribute("data-state", "busy");
    $("submit").disabled = true;
    try {
      try {
        showPrediction(await call("predict", { text: text }));
      } catch (err) {
        clearPrediction();
        showError("Classifying failed: " + err.message);
        return;
      }
      $("result").hidden = false;
      if (methods.length) {
        var layers = model.self_attention && $("layers").checked;
        try {
          showExplanation(await call("explain", { text: text, methods: methods, layers: layers }));
        } catch (err) {
          clearExplanation();
          showError("Explaining failed (the label shown is this text's): " + err.message);
          return;
        }
      }
      document.body.setAttribute("data-state", "done");
    } finally {
      $("submit").disabled = false;
    }
  }

  async function init() {
    try {
      model = await call("model");
    } catch (err) {
      $("model-info").textContent = "could not load the model: " + err.message;
      if (!$("key-option").hidden) {  // retry once a key is entered
        $("api-key").addEventListener("change", init, { once: true });
      }
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
