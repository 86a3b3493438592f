/* Behaviour the staff pages used to give through inline handlers, which our
   Content-Security-Policy blocks (script-src has no 'unsafe-inline'). The templates mark
   elements with data- attributes instead:
     data-patron-confirm="Question?"  a button or link that goes on only if confirmed
     data-patron-action="name"        a bulk action of Flask-Admin's list ("With selected")
     data-patron-inline-add="field"   adds a row to an inline form (the survey builder's questions)
   Flask-Admin's filter rows get labels here too (they are built by its script, unlabelled).
   Links to "javascript:void(0)" (Flask-Admin's tabs, pager and menus) never navigate: the
   policy would refuse to run the URL and report it. */
(function () {
  'use strict';

  document.addEventListener('click', function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) { return; }

    var confirming = target.closest('[data-patron-confirm]');
    if (confirming && !window.confirm(confirming.getAttribute('data-patron-confirm'))) {
      event.preventDefault();
      event.stopImmediatePropagation();
      return;
    }

    var action = target.closest('[data-patron-action]');
    if (action && window.modelActions) {
      event.preventDefault();
      window.modelActions.execute(action.getAttribute('data-patron-action'));
      return;
    }

    var add = target.closest('[data-patron-inline-add]');
    if (add && window.faForm) {
      event.preventDefault();
      window.faForm.addInlineField(add, add.getAttribute('data-patron-inline-add'));
    }
  }, true);

  // Flask-Admin 2.2.1's filter rows (admin/js/bs4_filters.js) are built in the browser with an
  // operation menu and a value field that have no label: each is named after its filter
  // ("Status: equals"), and again whenever a row is added or its operation changes.
  function labelFilterRows(root) {
    root.querySelectorAll('table.filters tr').forEach(function (row) {
      var button = row.querySelector('.remove-filter');
      var name = button ? button.textContent.replace('\u00d7', '').trim() : '';
      var op = row.querySelector('select.filter-op');
      var opText = op && op.selectedIndex >= 0 ? op.options[op.selectedIndex].text : '';
      if (op) { op.setAttribute('aria-label', name); }
      row.querySelectorAll('.filter-val').forEach(function (field) {
        field.setAttribute('aria-label', opText ? name + ': ' + opText : name);
      });
    });
  }
  document.addEventListener('DOMContentLoaded', function () {
    var filters = document.querySelector('table.filters');
    if (!filters) { return; }
    labelFilterRows(document);
    new MutationObserver(function () { labelFilterRows(document); })
      .observe(filters, { childList: true, subtree: true });
    filters.addEventListener('change', function () { labelFilterRows(document); });
  });

  // Captured first (Bootstrap's menus stop the click from bubbling); only the navigation is
  // cancelled, so Bootstrap's and Flask-Admin's own handlers on these links still run.
  window.addEventListener('click', function (event) {
    var link = event.target instanceof Element ? event.target.closest('a[href]') : null;
    if (link && /^\s*javascript:/i.test(link.getAttribute('href'))) {
      event.preventDefault();
    }
  }, true);
})();
