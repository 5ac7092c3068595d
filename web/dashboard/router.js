// Hash routes: #/queues, #/queues/{vhost}/{name}, ... Segments are percent-encoded.
import { useEffect, useState } from './vendor/htm-preact-standalone.module.js';

export function link(...segments) {
  return `#/${segments.map((s) => encodeURIComponent(s)).join('/')}`;
}

export function parseHash(hash) {
  const path = hash.replace(/^#\/?/, '');
  if (!path) return [];
  return path.split('/').map((s) => {
    try {
      return decodeURIComponent(s);
    } catch (e) {
      return s;
    }
  });
}

export function useRoute() {
  const [route, setRoute] = useState(parseHash(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseHash(location.hash));
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}
