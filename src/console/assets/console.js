// The console's only script (embedded in the binary; the CSP forbids
// inline script). Asks before a delete; the pages work without it.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (form.getAttribute("data-confirm") && !window.confirm(form.getAttribute("data-confirm"))) {
    event.preventDefault();
  }
});
