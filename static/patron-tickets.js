/* The ticket page without inline handlers (the CSP forbids them):
     select[data-canned-target="ID"]  a canned-reply picker: the chosen reply's text (its
                                      option's data-body, plain text) goes into the text box ID
                                      at the cursor, and the picker goes back to its prompt.
   The resolve/close dialogs are Bootstrap's own (data-toggle="modal"); without script their
   links open the same form as a page. */
(function () {
  'use strict';

  function insertAtCursor(box, text) {
    var start = typeof box.selectionStart === 'number' ? box.selectionStart : box.value.length;
    var end = typeof box.selectionEnd === 'number' ? box.selectionEnd : box.value.length;
    var before = box.value.slice(0, start);
    var after = box.value.slice(end);
    var gap = before && !/\s$/.test(before) ? '\n\n' : '';
    box.value = before + gap + text + after;
    var caret = (before + gap + text).length;
    box.setSelectionRange(caret, caret);
    box.dispatchEvent(new Event('input', { bubbles: true }));
  }

  document.addEventListener('change', function (event) {
    var picker = event.target;
    if (!(picker instanceof HTMLSelectElement) || !picker.hasAttribute('data-canned-target')) { return; }
    var option = picker.options[picker.selectedIndex];
    var box = document.getElementById(picker.getAttribute('data-canned-target'));
    if (option && option.value && box) {
      insertAtCursor(box, option.getAttribute('data-body') || '');
      box.focus();
    }
    picker.value = '';
  });

  // The dialog's text box gets the focus once it is open (Bootstrap moves it to the dialog).
  if (window.jQuery) {
    window.jQuery(document).on('shown.bs.modal', '.modal', function () {
      var box = this.querySelector('textarea');
      if (box) { box.focus(); }
    });
  }
  // Files larger together than the server takes in one request: stop the send (the text stays).
  document.addEventListener('submit', function (event) {
    var input = event.target.querySelector('input[type="file"][data-max-total]');
    if (!input || !input.files) { return; }
    var total = 0;
    for (var i = 0; i < input.files.length; i += 1) { total += input.files[i].size; }
    var note = document.getElementById('files-too-big');
    if (total > Number(input.getAttribute('data-max-total'))) {
      event.preventDefault();
      if (note) { note.textContent = input.getAttribute('data-too-big'); note.hidden = false; }
      input.focus();
    } else if (note) {
      note.hidden = true;
    }
  });
})();
