/* A "Print" button: <button data-patron-print>. An inline onclick would be blocked by the
   Content-Security-Policy, so the page loads this file instead. */
(function () {
  'use strict';
  document.addEventListener('click', function (event) {
    var button = event.target instanceof Element ? event.target.closest('[data-patron-print]') : null;
    if (button) {
      event.preventDefault();
      window.print();
    }
  });
})();
