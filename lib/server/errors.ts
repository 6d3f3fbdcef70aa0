/**
 * Errors of the HTTP server in OpenAI's shape, `{ error: { message, type, param, code } }`, and the
 * mapping of library errors to HTTP statuses. Internal module.
 */
import { VideoLlama3Error } from '../errors';

/** OpenAI's error `type` values used here. */
export type ApiErrorType = 'invalid_request_error' | 'rate_limit_error' | 'server_error' | 'timeout_error';

/** The JSON body of every error response. */
export interface ApiErrorBody {
  error: { message: string; type: ApiErrorType; param: string | null; code: string | null };
}

/** An HTTP error answered with OpenAI's error JSON. */
export class ApiError extends Error {
  /** HTTP status. */
  readonly status: number;
  readonly type: ApiErrorType;
  /** The request field at fault (`messages[0].content[1].image_url.url`), or null. */
  readonly param: string | null;
  /** A machine-readable code (`invalid_api_key`, `rate_limit_exceeded`, ...), or null. */
  readonly code: string | null;
  /** Extra response headers (`Retry-After`, `WWW-Authenticate`). */
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    options: { param?: string | null; code?: string | null; type?: ApiErrorType; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'ApiError';
    this.status = status;
    this.type = options.type ?? (status >= 500 ? 'server_error' : 'invalid_request_error');
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    this.headers = options.headers ?? {};
  }

  /** The response body. */
  body(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 naming the field at fault. */
export function badRequest(param: string | null, message: string, code: string | null = null): ApiError {
  return new ApiError(400, message, { param, code });
}

/** Abort reason: the per-request time limit passed. */
export class RequestTimeout extends Error {
  constructor(timeoutMs: number) {
    super(`The request took longer than the server's limit of ${timeoutMs} ms`);
    this.name = 'RequestTimeout';
  }
}

/** Abort reason: the client closed the connection. */
export class ClientGone extends Error {
  constructor() {
    super('The client closed the connection');
    this.name = 'ClientGone';
  }
}

/**
 * The ApiError for anything a request handler threw. Library errors map by code: INVALID_ARGUMENT
 * → 400; INVALID_MODEL and IO_ERROR → 400 when the request carried media (they come from reading
 * it), else 500; DISPOSED and ABORTED (the model is shutting down) → 503; others → 500.
 */
export function toApiError(err: unknown, context: { media: boolean }): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof RequestTimeout) return new ApiError(504, err.message, { type: 'timeout_error', code: 'timeout' });
  if (err instanceof VideoLlama3Error) {
    switch (err.code) {
      case 'INVALID_ARGUMENT':
        // The library's "prompt needs N tokens ... but contextSize is M" message.
        return badRequest(null, err.message, /contextSize is \d+/.test(err.message) ? 'context_length_exceeded' : null);
      case 'INVALID_MODEL':
      case 'IO_ERROR':
        return context.media ? badRequest('messages', err.message, 'invalid_media') : new ApiError(500, err.message, { code: err.code.toLowerCase() });
      case 'DISPOSED':
      case 'ABORTED':
        return new ApiError(503, `The model is shutting down: ${err.message}`, { code: 'service_unavailable' });
      default:
        return new ApiError(500, err.message, { code: err.code.toLowerCase() });
    }
  }
  return new ApiError(500, 'Internal server error', { code: 'internal_error', cause: err });
}
