// Checks on the checkpoint's input files before the converter opens them.
import { readFileSync, statSync, type Stats } from 'node:fs';
import { VideoLlama3Error } from '../errors';

/**
 * Throws unless `file` is a regular file: INVALID_MODEL for a folder, named pipe, socket or device
 * (opening a pipe would block the JavaScript thread until something writes to it), IO_ERROR when
 * the file cannot be examined.
 */
export function checkRegularFile(file: string): void {
  let st: Stats;
  try {
    st = statSync(file);
  } catch (err) {
    throw new VideoLlama3Error('IO_ERROR', `Cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (st.isFile()) return;
  const kind = st.isDirectory() ? 'a folder' : st.isFIFO() ? 'a named pipe' : st.isSocket() ? 'a socket' : 'a device';
  throw new VideoLlama3Error(
    'INVALID_MODEL',
    `${file} is ${kind}, not a regular file; replace it with the checkpoint's file of that name`,
  );
}

/** The UTF-8 text of the regular file `file`; see {@link checkRegularFile} for the errors. */
export function readTextFile(file: string): string {
  checkRegularFile(file);
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new VideoLlama3Error('IO_ERROR', `Cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}
