import { IClock, IVisibility, nextDelay, Poller, PollResult } from '../src/poll';

const OPTIONS = { interval: 10, max: 120, factor: 2, soon: 1 };

/** A clock whose timers run only when the test advances it. */
class FakeClock implements IClock {
  now = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private ids = 0;

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.ids;
    this.timers.push({ at: this.now + ms, fn, id });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter(t => t.id !== handle);
  }

  /** The delay of the one pending timer, in seconds. */
  get pending(): number[] {
    return this.timers.map(t => (t.at - this.now) / 1000);
  }

  async advance(seconds: number): Promise<void> {
    this.now += seconds * 1000;
    const due = this.timers.filter(t => t.at <= this.now);
    this.timers = this.timers.filter(t => t.at > this.now);
    for (const t of due) {
      t.fn();
    }
    await flush();
  }
}

class FakeVisibility implements IVisibility {
  isHidden = false;
  listeners: (() => void)[] = [];
  hidden(): boolean {
    return this.isHidden;
  }
  onChange(listener: () => void): () => void {
    this.listeners.push(listener);
    return () => (this.listeners = this.listeners.filter(l => l !== listener));
  }
  set(hidden: boolean): void {
    this.isHidden = hidden;
    this.listeners.forEach(l => l());
  }
}

async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await Promise.resolve();
  }
}

function setup(results: (PollResult | Error)[]) {
  const clock = new FakeClock();
  const visibility = new FakeVisibility();
  let calls = 0;
  const task = async (): Promise<PollResult> => {
    const next = results[Math.min(calls, results.length - 1)];
    calls += 1;
    if (next instanceof Error) {
      throw next;
    }
    return next;
  };
  const poller = new Poller(task, OPTIONS, clock, visibility);
  return { clock, visibility, poller, calls: () => calls };
}

describe('nextDelay', () => {
  it('doubles per failure up to the maximum', () => {
    expect([0, 1, 2, 3, 4, 5].map(n => nextDelay(n, OPTIONS))).toEqual([10, 20, 40, 80, 120, 120]);
  });
});

describe('Poller', () => {
  it('polls at once, then every interval', async () => {
    const { clock, poller, calls } = setup(['done']);
    poller.start();
    await flush();
    expect(calls()).toBe(1);
    expect(clock.pending).toEqual([10]);
    await clock.advance(10);
    expect(calls()).toBe(2);
    expect(clock.pending).toEqual([10]);
    poller.stop();
    expect(clock.pending).toEqual([]);
  });

  it('backs off after failures and recovers after a success', async () => {
    const err = new Error('503');
    const { clock, poller, calls } = setup([err, err, err, 'done']);
    poller.start();
    await flush();
    expect(clock.pending).toEqual([20]);
    await clock.advance(20);
    expect(clock.pending).toEqual([40]);
    await clock.advance(40);
    expect(clock.pending).toEqual([80]);
    await clock.advance(80);
    expect(calls()).toBe(4);
    expect(poller.failures).toBe(0);
    expect(clock.pending).toEqual([10]);
  });

  it('looks again soon when asked to', async () => {
    const { clock, poller } = setup(['soon', 'done']);
    poller.start();
    await flush();
    expect(clock.pending).toEqual([1]);
    await clock.advance(1);
    expect(clock.pending).toEqual([10]);
  });

  it('pauses while the page is hidden and refreshes when it is shown', async () => {
    const { clock, visibility, poller, calls } = setup(['done']);
    poller.start();
    await flush();
    visibility.set(true);
    expect(clock.pending).toEqual([]);
    await clock.advance(1000);
    expect(calls()).toBe(1);
    visibility.set(false);
    await flush();
    expect(calls()).toBe(2);
    expect(clock.pending).toEqual([10]);
  });

  it('refresh polls now and restarts the schedule', async () => {
    const { clock, poller, calls } = setup(['done']);
    poller.start();
    await flush();
    await clock.advance(5);
    await poller.refresh();
    expect(calls()).toBe(2);
    expect(clock.pending).toEqual([10]);
  });
});
