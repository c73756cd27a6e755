// sphere-lite dashboard: live refresh over server-sent events, bulk selection, the metric
// chooser's search and keyboard review of drift incidents.
// Loaded as a file (the CSP allows no inline script); it takes no data from the page but
// element attributes, and inserts only HTML the server rendered (and escaped) itself.
"use strict";
(function () {
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t.hasAttribute && t.hasAttribute("data-select-all")) {
      document.querySelectorAll('input[type=checkbox][name=id][form=bulk]').forEach(function (c) {
        c.checked = t.checked;
      });
    }
  });

  // The metric chooser's search box: hides the keys that do not contain the typed text and
  // opens the groups that still show one.
  document.addEventListener("input", function (e) {
    var t = e.target;
    if (!t.hasAttribute || !t.hasAttribute("data-filter")) { return; }
    var box = document.getElementById(t.getAttribute("data-filter"));
    if (!box) { return; }
    var text = t.value.trim().toLowerCase();
    box.querySelectorAll("details").forEach(function (group) {
      var shown = 0;
      group.querySelectorAll("label[data-key]").forEach(function (l) {
        var hit = text === "" || l.getAttribute("data-key").toLowerCase().indexOf(text) >= 0;
        l.hidden = !hit;
        if (hit) { shown += 1; }
      });
      group.hidden = shown === 0;
      if (text !== "") { group.open = shown > 0; }
    });
  });

  // Keyboard review (Drift Hub, an incident's page): j/k move between incident cards, 1-9 pick
  // a label of the current card, Enter validates it, o opens its page. Keys typed into a
  // field stay text.
  var current = -1;
  function cards() {
    return Array.prototype.slice.call(document.querySelectorAll(".review article.incident"));
  }
  function mark(scroll) {
    var list = cards();
    list.forEach(function (c, n) { c.classList.toggle("current", n === current); });
    if (scroll && list[current]) { list[current].scrollIntoView({ block: "nearest" }); }
  }
  function pick(button) {
    var form = button.closest("form");
    var input = form && form.querySelector("input[name=label]");
    if (!input) { return; }
    input.value = button.getAttribute("data-pick");
    form.querySelectorAll("[data-pick]").forEach(function (b) {
      b.classList.toggle("chosen", b === button);
    });
  }
  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("[data-pick]") : null;
    if (button) { pick(button); }
  });
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) { return; }
    if (t && /^(INPUT|TEXTAREA|SELECT|BUTTON|A)$/.test(t.tagName)) { return; }
    var list = cards();
    if (list.length === 0) { return; }
    if (current >= list.length) { current = list.length - 1; }
    var card = list[current < 0 ? 0 : current];
    if (e.key === "j" || e.key === "k") {
      current = e.key === "j" ? Math.min(current + 1, list.length - 1) : Math.max(current - 1, 0);
      mark(true);
    } else if (/^[1-9]$/.test(e.key)) {
      var button = card.querySelector('[data-key="' + e.key + '"]');
      if (!button) { return; }
      if (current < 0) { current = 0; mark(true); }
      pick(button);
    } else if (e.key === "Enter") {
      var validate = card.querySelector("button.validate");
      if (!validate) { return; }
      validate.click();
    } else if (e.key === "o") {
      var open = card.querySelector("a.open");
      if (!open) { return; }
      location.href = open.href;
    } else {
      return;
    }
    e.preventDefault();
  });

  var url = document.body.getAttribute("data-live-url");
  if (!url || !window.EventSource || !window.fetch) {
    return;
  }
  var onlyDevice = document.body.getAttribute("data-live-device");
  var timer = null;

  // A region the operator is working in (focus, typed text, ticked boxes) is not replaced:
  // a banner offers a reload instead.
  function busy(region) {
    var active = document.activeElement;
    if (active && active !== document.body && region.contains(active) &&
        (active.tagName === "INPUT" || active.tagName === "SELECT" || active.tagName === "TEXTAREA")) {
      return true;
    }
    return Array.prototype.some.call(region.querySelectorAll("input"), function (i) {
      // Only what the operator changed: boxes and fields the server filled in are not work.
      if (i.type === "checkbox") { return i.checked !== i.defaultChecked; }
      if (i.type === "hidden" || i.type === "submit") { return false; }
      return i.value !== i.defaultValue;
    });
  }

  function refresh() {
    timer = null;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok && !r.redirected ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (region) {
          var fresh = doc.querySelector('[data-live="' + region.getAttribute("data-live") + '"]');
          if (!fresh) { return; }
          if (busy(region)) {
            document.getElementById("live-banner").hidden = false;
            return;
          }
          region.replaceWith(document.importNode(fresh, true));
        });
        mark(false);
      })
      .catch(function () { /* the next event retries */ });
  }

  function schedule(e) {
    if (onlyDevice && e.type !== "lagged") {
      try {
        if (JSON.parse(e.data).device !== onlyDevice) { return; }
      } catch (err) { return; }
    }
    if (!timer) { timer = setTimeout(refresh, 300); }
  }

  // A page left for another may be kept for Back (the back/forward cache) with its stream
  // still open: six of those use up the browser's connections to the server, and the next
  // page's images and navigation wait for a free one. Closed on leaving, opened on return.
  var source = null;
  function listen() {
    source = new EventSource(url);
    ["package", "decided", "feedback-results", "lagged"].forEach(function (name) {
      source.addEventListener(name, schedule);
    });
  }
  listen();
  window.addEventListener("pagehide", function () {
    if (source) { source.close(); source = null; }
  });
  window.addEventListener("pageshow", function (e) {
    if (e.persisted && !source) { listen(); }
  });
})();
