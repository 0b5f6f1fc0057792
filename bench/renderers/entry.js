// Bundled by bench_renderers.py with esbuild into a local IIFE (no CDN): window.createScatterplot.
import createScatterplot from 'regl-scatterplot';
window.createScatterplot = createScatterplot;
