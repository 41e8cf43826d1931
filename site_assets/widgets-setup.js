// Loaded after require.js and before the widget manager (embed-amd.js), on pages that show widgets.
(function () {
  "use strict";
  // The manager's bundle is served from this site, next to this file. Its webpack chunks locate their assets (the
  // Font Awesome fonts) from the require.js module URIs, which default to "<page folder>/@jupyter-widgets/...": a 404
  // on every page. Map those module ids onto the vendored folder so the fonts load from beside the bundle.
  var dist = new URL("vendor/html-manager-1.0.6/dist/", document.currentScript.src).href;
  window.__jupyter_widgets_assets_path__ = dist;
  window.requirejs.config({
    paths: {
      "@jupyter-widgets/html-manager/dist": dist.replace(/\/$/, ""),
      "@jupyter-widgets": dist.replace(/\/$/, ""),
    },
  });
  // The widgets' typeset() helper speaks the MathJax 2 API (MathJax.Hub.Queue); Sphinx serves MathJax 3, so a widget
  // whose label or value holds text raised "Cannot read properties of undefined (reading 'Queue')". Give MathJax 3 a
  // small Hub.Queue that typesets the element. Runs before the manager renders (its 'load' listener comes later).
  window.addEventListener("load", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub || typeof mj.typesetPromise !== "function") return;
    mj.Hub = {
      Queue: function (job) {
        var el = Array.isArray(job) ? job[2] : undefined;
        var ready = mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
        return ready.then(function () { return mj.typesetPromise(el ? [el] : undefined); }).catch(function () {});
      },
    };
  });
})();
