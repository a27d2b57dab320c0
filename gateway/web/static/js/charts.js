// A sparkline drawn as SVG: the last N values of a series, scaled to the box.
const SVG_NS = 'http://www.w3.org/2000/svg';
const MAX_POINTS = 60;

export function series() {
  const values = [];
  return {
    push(value) {
      values.push(Number.isFinite(value) ? value : 0);
      if (values.length > MAX_POINTS) values.shift();
    },
    values,
  };
}

export function drawSpark(svg, values) {
  if (!svg) return;
  const [width, height] = [120, 32];
  const max = Math.max(1, ...values);
  // The points collected so far span the whole width (up to MAX_POINTS of them).
  const step = width / Math.max(values.length - 1, 1);
  const y = (v) => (height - 2 - (v / max) * (height - 4)).toFixed(1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${y(v)}`);
  let line = svg.querySelector('polyline');
  if (!line) {
    line = document.createElementNS(SVG_NS, 'polyline');
    line.setAttribute('fill', 'none');
    line.setAttribute('class', 'spark-line');
    svg.append(line);
  }
  line.setAttribute('points', points.join(' '));
}
