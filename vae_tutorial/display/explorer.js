// The latent explorer without a kernel: vae_tutorial.widgets writes this script, inline, at the
// end of a <div class="vae-explorer"> that also holds the decoder's weights (base64, float16
// or float32) as JSON. It evaluates the fully connected decoder in plain JavaScript, so
// moving a slider decodes the new code z in the page: no Python, no network.
(function (root) {
  "use strict";
  if (!root || root.vaeExplorer) return; // run once per explorer
  var spec = JSON.parse(root.querySelector("script.vae-explorer-spec").textContent);
  // The labels in the page's language (the Chinese edition's <html lang="zh-CN">).
  var zh = /^zh/i.test(document.documentElement.lang || "");
  var LABELS = zh ? {reset: "重置", random: "随机 z ~ p(z)", resetTitle: "回到 z0",
                     randomTitle: "从 N(0, 1) 抽取所显示的坐标", image: "由 z = (", imageEnd: ") 解码的图像",
                     cls: "类别", warning: "警告：本页解码 z 的结果与 PyTorch 不同（最大像素差 ",
                     warningEnd: "），图像可能有误。"}
                  : {reset: "reset", random: "random z ~ p(z)", resetTitle: "back to z0",
                     randomTitle: "draw the shown coordinates from N(0, 1)", image: "image decoded from z = (",
                     imageEnd: ")", cls: "class",
                     warning: "Warning: this page decodes z differently from PyTorch (largest pixel difference ",
                     warningEnd: "); the pictures may be wrong."};

  function bytesOf(b64) {
    var text = atob(b64), bytes = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes;
  }
  function halfToFloat(h) { // IEEE 754 binary16 -> number
    var sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
    if (exp === 0) return sign * frac * Math.pow(2, -24);
    if (exp === 31) return frac ? NaN : sign * Infinity;
    return sign * (1 + frac / 1024) * Math.pow(2, exp - 15);
  }
  function floatsOf(b64, dtype) { // little-endian floats -> Float64Array
    var bytes = bytesOf(b64), view = new DataView(bytes.buffer), size = dtype === "float16" ? 2 : 4;
    var out = new Float64Array(bytes.length / size);
    for (var i = 0; i < out.length; i++)
      out[i] = size === 2 ? halfToFloat(view.getUint16(2 * i, true)) : view.getFloat32(4 * i, true);
    return out;
  }

  var weights = floatsOf(spec.weights, spec.dtype);
  var H = spec.shape[0], W = spec.shape[1], scale = spec.scale, dims = spec.dims;
  var z0 = spec.z0.slice(), z = spec.z.slice(), y = spec.y;
  var pixels = new Float64Array(H * W);

  // z (and the one-hot class of a conditional model) -> decoder output -> mean of p(x|z), in [0, 1]
  function decode() {
    var x = z.slice();
    if (spec.classes) for (var c = 0; c < spec.classes.length; c++) x.push(c === y ? 1 : 0);
    spec.layers.forEach(function (layer) {
      if (layer.op === "linear") {
        var out = new Array(layer.out), w = layer.offset, b = layer.offset + layer.out * layer.in;
        for (var j = 0; j < layer.out; j++) {
          var s = weights[b + j], row = w + j * layer.in;
          for (var k = 0; k < layer.in; k++) s += weights[row + k] * x[k];
          out[j] = s;
        }
        x = out;
      } else if (layer.op === "relu") {
        x = x.map(function (v) { return v > 0 ? v : 0; });
      } else if (layer.op === "leaky_relu") {
        x = x.map(function (v) { return v > 0 ? v : layer.slope * v; });
      } else if (layer.op === "tanh") {
        x = x.map(Math.tanh);
      } else if (layer.op === "sigmoid") {
        x = x.map(function (v) { return 1 / (1 + Math.exp(-v)); });
      }
    });
    for (var i = 0; i < H * W; i++) {
      var l = x[i], m;
      if (spec.likelihood === "bernoulli") m = 1 / (1 + Math.exp(-l));
      else if (spec.likelihood === "continuous_bernoulli") // as VAE.mean, Taylor series near 0
        m = Math.abs(l) < 0.1 ? 0.5 + l / 12 - (l * l * l) / 720 : -1 / Math.expm1(-l) - 1 / l;
      else m = l; // Gaussian: the mean itself
      pixels[i] = Math.min(1, Math.max(0, m));
    }
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  var canvas = el("canvas", "vae-explorer-image");
  canvas.width = W;
  canvas.height = H;
  canvas.style.width = W * scale + "px";
  canvas.style.height = H * scale + "px";
  canvas.setAttribute("role", "img");
  var ctx = canvas.getContext("2d"), picture = ctx.createImageData(W, H);

  function draw() {
    decode();
    for (var i = 0; i < H * W; i++) {
      var v = Math.round(255 * pixels[i]);
      picture.data[4 * i] = picture.data[4 * i + 1] = picture.data[4 * i + 2] = v;
      picture.data[4 * i + 3] = 255;
    }
    ctx.putImageData(picture, 0, 0);
    canvas.setAttribute("aria-label", LABELS.image +
      z.map(function (v) { return v.toFixed(2); }).join(", ") + LABELS.imageEnd);
  }

  var sliders = [], readouts = [];
  function clamp(v) { return Math.min(spec.span, Math.max(-spec.span, v)); }
  function show(i) { sliders[i].value = z[i]; readouts[i].textContent = z[i].toFixed(2); }
  function setCode(values) { // the first `dims` coordinates, clamped to the sliders' range
    for (var i = 0; i < dims; i++) { z[i] = clamp(values[i]); show(i); }
    draw();
  }

  var panel = el("div", "vae-explorer-panel"), columns = [];
  panel.appendChild(canvas);
  for (var i = 0; i < dims; i++) {
    if (i % 8 === 0) { columns.push(el("div", "vae-explorer-column")); panel.appendChild(columns[columns.length - 1]); }
    var row = el("label", "vae-explorer-row"), slider = el("input"), readout = el("span", "vae-explorer-readout");
    slider.type = "range";
    slider.min = -spec.span;
    slider.max = spec.span;
    slider.step = spec.step;
    slider.setAttribute("aria-label", "z" + (i + 1));
    slider.addEventListener("input", (function (i) {
      return function () { z[i] = parseFloat(sliders[i].value); readouts[i].textContent = z[i].toFixed(2); draw(); };
    })(i));
    row.appendChild(el("span", "vae-explorer-name", "z" + (i + 1)));
    row.appendChild(slider);
    row.appendChild(readout);
    columns[columns.length - 1].appendChild(row);
    sliders.push(slider);
    readouts.push(readout);
  }

  // "random z ~ p(z)": N(0, 1) draws from a seeded generator (mulberry32 and Box-Muller),
  // so that the page behaves the same on every visit
  var state = spec.seed >>> 0;
  function uniform() {
    state = (state + 0x6d2b79f5) >>> 0;
    var t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  function normal() { return Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform()); }

  var controls = el("div", "vae-explorer-controls");
  if (spec.classes) {
    var menu = el("select", "vae-explorer-class");
    menu.setAttribute("aria-label", LABELS.cls);
    spec.classes.forEach(function (name, c) {
      var option = el("option", null, name);
      option.value = c;
      menu.appendChild(option);
    });
    menu.value = y;
    menu.addEventListener("change", function () { y = parseInt(menu.value, 10); draw(); });
    controls.appendChild(el("span", "vae-explorer-name", LABELS.cls));
    controls.appendChild(menu);
  }
  var resetButton = el("button", "vae-explorer-reset", LABELS.reset),
      randomButton = el("button", "vae-explorer-random", LABELS.random);
  resetButton.type = randomButton.type = "button";
  resetButton.title = LABELS.resetTitle;
  randomButton.title = LABELS.randomTitle;
  function reset() { setCode(z0); }
  function randomize() {
    var values = [];
    for (var i = 0; i < dims; i++) values.push(normal());
    setCode(values);
  }
  resetButton.addEventListener("click", reset);
  randomButton.addEventListener("click", randomize);
  controls.appendChild(resetButton);
  controls.appendChild(randomButton);

  var note = el("div", "vae-explorer-note", "Decoded in this page by JavaScript from the model's " +
    spec.dtype + " weights (" + Math.round(weights.length * (spec.dtype === "float16" ? 2 : 4) / 1024) +
    " KiB); no Python kernel needed.");
  root.replaceChildren(panel, controls, note);
  for (i = 0; i < dims; i++) show(i);
  draw();

  // Self-check: the first picture must match the one Python decoded when it wrote the page.
  var expected = floatsOf(spec.check.mean, "float32"), worst = 0;
  for (i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(expected[i] - pixels[i]));
  if (!(worst <= spec.check.tolerance)) {
    note.textContent = LABELS.warning + worst.toExponential(1) + LABELS.warningEnd;
    note.classList.add("vae-explorer-warning");
  }

  root.vaeExplorer = { // for tests and the console
    z: function () { return z.slice(); },
    y: function () { return y; },
    pixels: function () { return Array.from(pixels); },
    setCode: setCode,
    reset: reset,
    randomize: randomize,
    check: spec.check,
    selfCheckError: worst,
  };
  root.setAttribute("data-ready", "true");
})((function () {
  // The script sits at the end of its explorer's <div>. A front end that runs output scripts
  // elsewhere (classic Notebook evaluates them in <head>) gets the last explorer not yet drawn.
  var script = document.currentScript, parent = script && script.parentElement;
  if (parent && parent.classList.contains("vae-explorer")) return parent;
  var waiting = document.querySelectorAll(".vae-explorer:not([data-ready])");
  return waiting[waiting.length - 1];
})());
