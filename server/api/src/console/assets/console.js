// PalmLink console: the little script the pages need. Everything a user typed is put in
// the page with textContent, never as markup.
"use strict";

// A page that shows a secret once was the answer to a POST: make a reload ask for the
// page again (GET) rather than send the form a second time.
(function () {
  var target = document.body.getAttribute("data-replace-url");
  if (target && window.history && window.history.replaceState) {
    window.history.replaceState(null, "", target);
  }
})();

// Buttons that ask before they act.
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// The live challenge list: poll its JSON and redraw the table's body.
(function () {
  var table = document.getElementById("live-challenges");
  if (!table) {
    return;
  }
  var source = table.getAttribute("data-source");
  var body = table.querySelector("tbody");
  var stamp = document.getElementById("live-updated");
  var total = document.getElementById("live-total");
  var columns = ["created_at", "type", "status", "external_user_id", "hardware_id", "palm_type", "outcome"];
  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (className) {
      td.className = className;
    }
    row.appendChild(td);
  }
  function draw(list) {
    var rows = document.createDocumentFragment();
    list.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-challenge-id", c.challenge_id);
      columns.forEach(function (key) {
        cell(tr, c[key], key === "status" ? "status-" + c.status : (key === "hardware_id" ? "mono" : ""));
      });
      rows.appendChild(tr);
    });
    if (list.length === 0) {
      var empty = document.createElement("tr");
      var td = document.createElement("td");
      td.colSpan = columns.length;
      td.className = "muted";
      td.textContent = "No challenges yet.";
      empty.appendChild(td);
      rows.appendChild(empty);
    }
    body.replaceChildren(rows);
  }
  function poll() {
    fetch(source, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 401) {
          window.location.assign("/console/sign-in");
          throw new Error("signed out");
        }
        return r.json();
      })
      .then(function (data) {
        draw(data.challenges);
        if (total) {
          total.textContent = String(data.total);
        }
        if (stamp) {
          stamp.textContent = new Date().toLocaleTimeString();
        }
        window.setTimeout(poll, 1000);
      })
      .catch(function () {
        window.setTimeout(poll, 3000);
      });
  }
  window.setTimeout(poll, 1000);
})();
