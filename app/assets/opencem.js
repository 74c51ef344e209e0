// Client-side helpers of the opencem app (served from app/assets: nothing is fetched from elsewhere).
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  opencem: {
    // Keep the page's filters in the URL so a view can be shared; replaceState adds no history entry.
    syncQuery: function (period, service, payment, kpi) {
      const params = new URLSearchParams(window.location.search);
      const values = { period: period, service: service, payment: payment, kpi: kpi };
      Object.keys(values).forEach(function (k) {
        if (values[k] !== undefined && values[k] !== null) { params.set(k, values[k]); }
      });
      const url = window.location.pathname + "?" + params.toString();
      if (url !== window.location.pathname + window.location.search) {
        window.history.replaceState(window.history.state, "", url);
      }
      return window.dash_clientside.no_update;
    },
    // Hand `figure` on once both maps of the overview are painted (MapLibre has loaded their zones), or
    // after a few seconds in any case, so that drawing it does not hold the maps up.
    afterMaps: function (figure) {
      if (!figure || !figure.data || !figure.data.length) { return figure || {}; }
      const painted = function () {
        return ["ov-revenue-map", "ov-kpi-map"].every(function (id) {
          const gd = document.querySelector("#" + id + " .js-plotly-plot");
          const sub = gd && gd._fullLayout && gd._fullLayout.map && gd._fullLayout.map._subplot;
          return Boolean(sub && sub.map && sub.map.loaded());
        });
      };
      if (painted()) { return figure; }
      const start = Date.now();
      return new Promise(function (resolve) {
        const timer = setInterval(function () {
          if (painted() || Date.now() - start > 5000) { clearInterval(timer); resolve(figure); }
        }, 100);
      });
    },
    // Outline the hovered zone on both maps of the overview.
    linkHover: function (hoverRevenue, hoverKpi) {
      const ctx = window.dash_clientside.callback_context;
      const trig = ctx.triggered.length ? ctx.triggered[0].value : null;
      const point = trig && trig.points && trig.points[0];
      const zone = point && point.location;
      if (!zone || !window.Plotly) { return window.dash_clientside.no_update; }
      ["ov-revenue-map", "ov-kpi-map"].forEach(function (id) {
        const host = document.getElementById(id);
        const gd = host && (host.classList.contains("js-plotly-plot") ? host : host.querySelector(".js-plotly-plot"));
        if (!gd || !gd.data) { return; }
        const idx = gd.data.findIndex(function (t) { return t.name === "selected"; });
        if (idx >= 0) {
          window.Plotly.restyle(gd, { locations: [[zone]], z: [[0]] }, [idx]);
        } else if (gd.data.length && gd.data[0].geojson) {
          // The outline trace is added on the first hover (app.figures.highlight_trace: keep them alike).
          window.Plotly.addTraces(gd, {
            type: "choroplethmap", name: "selected", geojson: gd.data[0].geojson, locations: [zone], z: [0],
            colorscale: [[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]], showscale: false, hoverinfo: "skip",
            marker: { line: { width: 3, color: "#212529" } }
          });
        }
      });
      return window.dash_clientside.no_update;
    }
  }
});
