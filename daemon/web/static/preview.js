// Live preview of a template as the therapist types: the same checks as Save, run on the server.
(function () {
  "use strict";
  var form = document.getElementById("edit");
  if (!form) { return; }
  var text = document.getElementById("text");
  var timer = null;
  function show(data) {
    var box = document.getElementById("problems");
    box.textContent = "";
    data.problems.forEach(function (p) {
      var el = document.createElement("p");
      el.className = "problem";
      el.textContent = (p.line ? "Line " + p.line + ": " : "") + p.text;
      box.appendChild(el);
    });
    document.getElementById("subject").textContent = data.subject;
    document.getElementById("body").textContent = data.body;
    document.getElementById("length").textContent = String(data.length);
  }
  function update() {
    var body = new URLSearchParams();
    body.set("csrf", form.elements.csrf.value);
    body.set("text", text.value);
    fetch(form.dataset.preview, { method: "POST", body: body, credentials: "same-origin" })
      .then(function (r) { return r.json(); }).then(show).catch(function () {});
  }
  text.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(update, 300); });
}());
