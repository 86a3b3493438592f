/* Draws the charts of the staff home page with Chart.js (served from /static/vendor).
 * Each <canvas data-chart='{...}'> carries its own spec, every word already translated by the
 * server: {type, title, labels, series: [{label, data}], y_title, x_title, unit, min, max, horizontal}.
 * No inline script: the page's Content-Security-Policy allows only scripts with its nonce. */
(function () {
  'use strict';
  if (typeof window.Chart === 'undefined') { return; }
  var COLOURS = ['#2f6fb3', '#c0662b', '#2e8b57', '#8e44ad', '#7f8c8d'];
  var LABEL_CHARS = 18;

  function shortened(text) {
    text = String(text);
    return text.length > LABEL_CHARS ? text.slice(0, LABEL_CHARS - 1) + '\u2026' : text;
  }

  function withUnit(value, unit) {
    if (value === null || value === undefined) { return '\u2014'; }
    return Number(value).toLocaleString(document.documentElement.lang || undefined) + (unit || '');
  }

  function config(spec) {
    var horizontal = !!spec.horizontal;
    var line = spec.type === 'line';
    var valueAxis = {
      beginAtZero: true,
      title: { display: !!spec.y_title, text: spec.y_title },
      ticks: { callback: function (value) { return withUnit(value, spec.unit); }, precision: 0 }
    };
    if (spec.min !== undefined) { valueAxis.min = spec.min; }
    if (spec.max !== undefined) { valueAxis.max = spec.max; }
    if (spec.step !== undefined) { valueAxis.ticks.stepSize = spec.step; }
    var labelAxis = {
      title: { display: !!spec.x_title, text: spec.x_title || '' },
      ticks: {
        autoSkip: true,
        maxRotation: horizontal ? 0 : 45,
        callback: function (value) { return shortened(this.getLabelForValue(value)); }
      }
    };
    return {
      type: spec.type,
      data: {
        labels: spec.labels,
        datasets: spec.series.map(function (series, i) {
          var colour = COLOURS[i % COLOURS.length];
          return {
            label: series.label,
            data: series.data,
            backgroundColor: line ? colour : colour + 'cc',
            borderColor: colour,
            borderWidth: line ? 2 : 1,
            spanGaps: true,
            pointRadius: 3
          };
        })
      },
      options: {
        indexAxis: horizontal ? 'y' : 'x',
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        layout: { padding: { right: 8 } },
        scales: horizontal ? { x: valueAxis, y: labelAxis } : { x: labelAxis, y: valueAxis },
        plugins: {
          legend: { display: spec.series.length > 1, position: 'bottom' },
          tooltip: {
            callbacks: {
              label: function (item) {
                return item.dataset.label + ': ' + withUnit(item.raw, spec.unit);
              }
            }
          }
        }
      }
    };
  }

  document.querySelectorAll('canvas[data-chart]').forEach(function (canvas) {
    var spec = JSON.parse(canvas.getAttribute('data-chart'));
    canvas.patronChart = new window.Chart(canvas, config(spec));
  });
})();
