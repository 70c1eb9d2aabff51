// "Select all" for the conflict queue's checkboxes. htmx swaps the table, so listen on the document.
document.addEventListener("change", function (event) {
  var name = event.target.getAttribute("data-select-all");
  if (!name) return;
  var form = event.target.form;
  form.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach(function (box) {
    box.checked = event.target.checked;
  });
});
