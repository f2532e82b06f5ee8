/**
 * A progress bar on stderr for long jobs: only on a terminal, and only once the job has taken
 * more than a second (short jobs print nothing extra).
 */
import type cliProgress from 'cli-progress';

export type Tick = (done: number, total?: number) => void;

export async function withProgress<T>(label: string, job: (tick: Tick) => Promise<T>): Promise<T> {
  const started = Date.now();
  let bar: cliProgress.SingleBar | undefined;
  const tty = process.stderr.isTTY === true;
  // cli-progress is loaded only on a terminal, where a bar may be drawn.
  const lib = tty ? (await import('cli-progress')).default : undefined;
  const tick: Tick = (done, total) => {
    if (!tty) return;
    if (!bar) {
      if (Date.now() - started < 1000 || !lib) return;
      bar = new lib.SingleBar(
        {
          stream: process.stderr,
          format: total ? `${label} [{bar}] {percentage}% {value}/{total}` : `${label} {value} done`,
          hideCursor: true,
          clearOnComplete: true,
        },
        lib.Presets.shades_classic,
      );
      bar.start(total ?? 0, done);
    }
    if (total !== undefined) bar.setTotal(total);
    bar.update(done);
  };
  try {
    return await job(tick);
  } finally {
    bar?.stop();
  }
}
