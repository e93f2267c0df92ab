/**
 * Helmet's security headers, computed once. Helmet's middleware (and `@fastify/helmet`, which
 * rebuilds it on every request) derives the same constant headers from the same options each
 * time; here helmet runs once per policy at start-up and every response gets the result.
 */
import helmet, { type HelmetOptions } from 'helmet';

export type HeaderSet = Readonly<Record<string, string>>;

/** JSON responses load nothing, so their policy allows nothing. */
const API_CSP_DIRECTIVES = {
  defaultSrc: ["'none'"],
  baseUri: ["'none'"],
  formAction: ["'none'"],
  frameAncestors: ["'none'"],
};

/**
 * Swagger UI's page and assets (`/docs`, `/docs/…`; not `/docs-json`) get the one looser policy:
 * the UI's own scripts, its inline styles and data: images, and calls to this origin for "Try it
 * out". No `upgrade-insecure-requests`: over plain http on any host but localhost it would send
 * the page's assets to https and leave the page blank; redirecting to https is the job of the
 * TLS termination in front of the service.
 */
const DOCS_CSP_DIRECTIVES = {
  ...API_CSP_DIRECTIVES,
  scriptSrc: ["'self'"],
  styleSrc: ["'self'", "'unsafe-inline'"],
  imgSrc: ["'self'", 'data:'],
  fontSrc: ["'self'", 'data:'],
  connectSrc: ["'self'"],
};

const DOCS_PAGE = /^\/docs(?:\/|\?|$)/;

export class SecurityHeaders {
  readonly api: HeaderSet = helmetHeaders({ contentSecurityPolicy: { useDefaults: false, directives: API_CSP_DIRECTIVES } });
  readonly docs: HeaderSet = helmetHeaders({ contentSecurityPolicy: { useDefaults: false, directives: DOCS_CSP_DIRECTIVES } });

  /** The headers for a response to `url`. */
  for(url: string): HeaderSet {
    return DOCS_PAGE.test(url) ? this.docs : this.api;
  }
}

/** Runs helmet's middleware once against a recorder and keeps what it set, names lower-cased. */
export function helmetHeaders(options: HelmetOptions): HeaderSet {
  const headers: Record<string, string> = {};
  const recorder = {
    setHeader(name: string, value: string | number) {
      headers[name.toLowerCase()] = String(value);
    },
    removeHeader(name: string) {
      delete headers[name.toLowerCase()];
    },
  };
  let failure: unknown;
  helmet(options)({} as never, recorder as never, (error?: unknown) => (failure = error));
  if (failure) throw failure instanceof Error ? failure : new Error(String(failure));
  return Object.freeze(headers);
}
