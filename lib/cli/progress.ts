// A one-line progress bar on stderr, drawn only on a terminal.

/** Draws `label [#####-----] 42% 1.2/2.9 GB` in place; silent when stderr is not a TTY. */
export class ProgressBar {
  private lastDraw = 0;
  private readonly tty = process.stderr.isTTY === true;
  private drawn = false;

  constructor(private readonly label: string) {}

  update(done: number, total: number, detail = ''): void {
    if (!this.tty) return;
    const now = Date.now();
    if (done < total && now - this.lastDraw < 80) return;
    this.lastDraw = now;
    const width = 30;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const filled = Math.round(frac * width);
    const gb = (n: number): string => (n / 1e9).toFixed(2);
    const cols = process.stderr.columns ?? 100;
    const line = `${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${Math.floor(frac * 100)
      .toString()
      .padStart(3)}% ${gb(done)}/${gb(total)} GB ${detail}`;
    process.stderr.write(`\r${line.slice(0, cols - 1).padEnd(cols - 1)}`);
    this.drawn = true;
  }

  finish(): void {
    if (this.drawn) process.stderr.write('\n');
    this.drawn = false;
  }
}
