/**
 * Every failure of the library is a {@link VideoLlama3Error} with a stable {@link ErrorCode}.
 * Aborts are the exception: an aborted call rejects with `signal.reason`, as fetch() does.
 */

/** Stable error codes. Branch on these, not on messages. */
export type ErrorCode =
  /** An option or argument is missing, of the wrong type, or out of range. */
  | 'INVALID_ARGUMENT'
  /** Model files are missing, corrupt, truncated, or have tensors of the wrong shape. */
  | 'INVALID_MODEL'
  /** A well-formed model of an architecture or layout this library does not implement. */
  | 'UNSUPPORTED_MODEL'
  /** The operating system refused a read or write. */
  | 'IO_ERROR'
  /** Work was cancelled. (Calls with an AbortSignal reject with `signal.reason` instead.) */
  | 'ABORTED'
  /** Memory could not be allocated. */
  | 'OUT_OF_MEMORY'
  /** The model was disposed: load it again to use it. */
  | 'DISPOSED'
  /** The native addon could not be loaded for this platform. */
  | 'ADDON_NOT_FOUND'
  /** The GPU asked for is not there (no CUDA build, driver or device), or it failed. */
  | 'DEVICE_UNAVAILABLE'
  /** A bug in videollama3-node; please report it. */
  | 'INTERNAL';

const CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'INVALID_ARGUMENT',
  'INVALID_MODEL',
  'UNSUPPORTED_MODEL',
  'IO_ERROR',
  'ABORTED',
  'OUT_OF_MEMORY',
  'DISPOSED',
  'ADDON_NOT_FOUND',
  'DEVICE_UNAVAILABLE',
  'INTERNAL',
]);

/** The one error class of videollama3-node. */
export class VideoLlama3Error extends Error {
  /** What went wrong, as a stable code. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VideoLlama3Error';
    this.code = code;
  }
}

/** Converts an error thrown by the native addon (a plain Error with `code`) to a VideoLlama3Error. */
export function fromNativeError(err: unknown): unknown {
  if (err instanceof VideoLlama3Error || !(err instanceof Error)) return err;
  const code = (err as Error & { code?: unknown }).code;
  if (typeof code === 'string' && CODES.has(code)) {
    return new VideoLlama3Error(code as ErrorCode, err.message);
  }
  return err;
}
