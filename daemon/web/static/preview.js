// Live preview of a template as the therapist types: the same checks as Save, run on the server.
(function () {
  "use strict";
  var form = document.getElementById("edit");
  if (!form) { return; }
  var text = document.getElementById("text");
  var client = document.getElementById("client");
  var timer = null;
  function line(kind, p) {
    var el = document.createElement("p");
    el.className = kind;
    el.textContent = (p.line ? "Line " + p.line + ": " : "") + p.text;
    if (p.source) {
      var code = document.createElement("code");
      code.className = "line";
      code.textContent = p.source;
      el.appendChild(code);
    }
    return el;
  }
  function show(data) {
    var box = document.getElementById("problems");
    box.textContent = "";
    data.problems.forEach(function (p) { box.appendChild(line("problem", p)); });
    (data.warnings || []).forEach(function (p) { box.appendChild(line("warning", p)); });
    if (data.problems.length) { text.setAttribute("aria-invalid", "true"); } else { text.removeAttribute("aria-invalid"); }
    document.getElementById("subject").textContent = data.subject;
    document.getElementById("body").textContent = data.body;
    document.getElementById("length").textContent = String(data.length);
  }
  function update() {
    var body = new URLSearchParams();
    body.set("csrf", form.elements.csrf.value);
    body.set("text", text.value);
    if (client) { body.set("client", client.value); }
    fetch(form.dataset.preview, { method: "POST", body: body, credentials: "same-origin" })
      .then(function (r) { return r.json(); }).then(show).catch(function () {});
  }
  text.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(update, 300); });
  if (client) { client.addEventListener("change", update); }
}());
