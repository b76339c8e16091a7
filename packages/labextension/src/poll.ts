/**
 * Polling with backoff, paused while the page is hidden. Pure: timers and page visibility
 * are passed in, so jest drives it with fake ones.
 */

export interface IBackoffOptions {
  /** Seconds between polls while all is well. */
  interval: number;
  /** Upper bound of the delay after failures, in seconds. */
  max: number;
  /** Each consecutive failure multiplies the delay by this. */
  factor: number;
  /** Seconds until the next poll when the task asks to look again soon. */
  soon: number;
}

export const DEFAULT_BACKOFF: IBackoffOptions = { interval: 15, max: 300, factor: 2, soon: 1 };

/** The delay in seconds after `failures` consecutive failures (0: the normal interval). */
export function nextDelay(failures: number, options: IBackoffOptions): number {
  if (failures <= 0) {
    return options.interval;
  }
  const delay = options.interval * Math.pow(options.factor, failures);
  return Math.min(options.max, delay);
}

/** What a poll reports: done (wait the interval) or look again soon (e.g. a check running). */
export type PollResult = 'done' | 'soon';

export interface IClock {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface IVisibility {
  hidden(): boolean;
  onChange(listener: () => void): () => void;
}

export const browserVisibility: IVisibility = {
  hidden: () => typeof document !== 'undefined' && document.visibilityState === 'hidden',
  onChange: listener => {
    document.addEventListener('visibilitychange', listener);
    return () => document.removeEventListener('visibilitychange', listener);
  }
};

export const realClock: IClock = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: handle => clearTimeout(handle as ReturnType<typeof setTimeout>)
};

export class Poller {
  failures = 0;
  polls = 0;
  private handle: unknown = null;
  private running = false;
  private stopped = true;
  private unlisten: (() => void) | null = null;

  constructor(
    private readonly task: () => Promise<PollResult>,
    public options: IBackoffOptions = DEFAULT_BACKOFF,
    private readonly clock: IClock = realClock,
    private readonly visibility: IVisibility = browserVisibility
  ) {}

  /** Poll now, then on the schedule. */
  start(): void {
    if (!this.stopped) {
      return;
    }
    this.stopped = false;
    this.unlisten = this.visibility.onChange(() => this.onVisibility());
    void this.tick();
  }

  stop(): void {
    this.stopped = true;
    this.cancel();
    if (this.unlisten) {
      this.unlisten();
      this.unlisten = null;
    }
  }

  /** Poll now (a click, a finished save): the schedule restarts from here. */
  refresh(): Promise<void> {
    this.cancel();
    return this.tick();
  }

  get scheduled(): boolean {
    return this.handle !== null;
  }

  private onVisibility(): void {
    if (this.stopped) {
      return;
    }
    if (this.visibility.hidden()) {
      this.cancel(); // paused: nothing runs while nobody looks
    } else if (!this.running) {
      void this.refresh(); // back in view: fresh at once
    }
  }

  private cancel(): void {
    if (this.handle !== null) {
      this.clock.clearTimeout(this.handle);
      this.handle = null;
    }
  }

  private async tick(): Promise<void> {
    if (this.stopped || this.running) {
      return;
    }
    this.running = true;
    this.handle = null;
    let delay: number;
    try {
      this.polls += 1;
      const result = await this.task();
      this.failures = 0;
      delay = result === 'soon' ? this.options.soon : this.options.interval;
    } catch {
      this.failures += 1;
      delay = nextDelay(this.failures, this.options);
    } finally {
      this.running = false;
    }
    this.schedule(delay);
  }

  private schedule(seconds: number): void {
    this.cancel();
    if (this.stopped || this.visibility.hidden()) {
      return;
    }
    this.handle = this.clock.setTimeout(() => void this.tick(), seconds * 1000);
  }
}
