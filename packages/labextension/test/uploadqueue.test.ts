import { withPrefix } from '../src/drop';
import { formatDuration } from '../src/format';
import {
  fraction,
  ICommitted,
  IQueueClock,
  IServerUpload,
  IUploadTransport,
  secondsLeft,
  UploadError,
  UploadQueue
} from '../src/uploadqueue';

const MiB = 2 ** 20;

/** A file whose slices are their byte ranges (the server only records ranges). */
class FakeFile {
  constructor(
    readonly name: string,
    readonly size: number
  ) {}
  slice(start: number, end: number): Blob {
    return { start, end, size: end - start } as unknown as Blob;
  }
}

interface IStaged extends IServerUpload {
  removed: boolean;
}

/**
 * The server's side of the protocol, in memory: offsets are checked as the server does
 * (409 with `received`), and a test can make the next PUT fail, hang or be refused.
 */
class FakeServer implements IUploadTransport {
  uploads = new Map<string, IStaged>();
  puts: { id: string; offset: number; length: number }[] = [];
  commits: string[] = [];
  removes: string[] = [];
  nextPut: ((id: string, offset: number) => void) | null = null;
  hold: Promise<void> | null = null;
  private ids = 0;

  async list(): Promise<IServerUpload[]> {
    return [...this.uploads.values()].filter(u => !u.removed && u.state === 'receiving');
  }

  async create(request: { name: string; size: number; key: string; instance: string | null }) {
    const id = `u${++this.ids}`;
    const upload: IStaged = {
      id,
      name: request.name,
      size: request.size,
      key: request.key,
      received: 0,
      state: 'receiving',
      chunk_size: 8 * MiB,
      instance: request.instance,
      removed: false
    };
    this.uploads.set(id, upload);
    return { ...upload };
  }

  async put(id: string, offset: number, body: Blob, signal: AbortSignal): Promise<number> {
    const upload = this.get(id);
    if (this.hold) {
      const hold = this.hold;
      await new Promise<void>((resolve, reject) => {
        signal.addEventListener('abort', () => reject(new UploadError(0, 'cancelled')));
        void hold.then(resolve);
      });
    }
    if (this.nextPut) {
      const fail = this.nextPut;
      this.nextPut = null;
      fail(id, offset);
    }
    if (offset !== upload.received) {
      throw new UploadError(409, `send the chunk at offset ${upload.received}`, upload.received);
    }
    this.puts.push({ id, offset, length: body.size });
    upload.received += body.size;
    return upload.received;
  }

  async commit(id: string): Promise<ICommitted> {
    const upload = this.get(id);
    if (upload.received !== upload.size) {
      throw new UploadError(409, 'not all bytes arrived');
    }
    this.commits.push(id);
    upload.state = 'committed';
    return { artifact: { uid: `A${id}`, key: upload.key }, deduplicated: false };
  }

  async remove(id: string): Promise<void> {
    this.get(id).removed = true;
    this.removes.push(id);
  }

  private get(id: string): IStaged {
    const upload = this.uploads.get(id);
    if (!upload || upload.removed) {
      throw new UploadError(404, `no upload ${id}`);
    }
    return upload;
  }
}

class FakeClock implements IQueueClock {
  time = 0;
  slept: number[] = [];
  now(): number {
    return this.time;
  }
  async sleep(ms: number): Promise<void> {
    this.slept.push(ms);
    this.time += ms;
  }
}

/** Let every settled promise run its callbacks. */
async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) {
    await Promise.resolve();
  }
}

function setup(parallel = 3) {
  const server = new FakeServer();
  const clock = new FakeClock();
  const queue = new UploadQueue(
    server,
    { parallel, chunkSize: 4 * MiB, networkTries: 2, retryMs: 1000, busyTries: 3, busyMs: 300 },
    clock
  );
  return { server, clock, queue };
}

describe('UploadQueue', () => {
  it('sends a file in chunks of the size the server asks for, then saves it', async () => {
    const { server, queue } = setup();
    const states: string[] = [];
    queue.onChange(() => {
      const s = queue.items[0].state;
      if (states[states.length - 1] !== s) {
        states.push(s);
      }
    });
    const [item] = queue.add([{ file: new FakeFile('cells.h5ad', 20 * MiB), key: 'raw/cells.h5ad' }], 'lab');
    await settle();
    expect(server.puts.map(p => [p.offset / MiB, p.length / MiB])).toEqual([
      [0, 8],
      [8, 8],
      [16, 4]
    ]);
    expect(states).toEqual(['waiting', 'starting', 'sending', 'complete', 'saving', 'saved']);
    expect(item.received).toBe(20 * MiB);
    expect(item.artifact).toEqual({ uid: 'Au1', key: 'raw/cells.h5ad' });
    expect(server.uploads.get('u1')!.key).toBe('raw/cells.h5ad');
    expect(server.uploads.get('u1')!.instance).toBe('lab');
    expect(fraction(item)).toBe(1);
  });

  it('an empty file is saved without a chunk', async () => {
    const { server, queue } = setup();
    const [item] = queue.add([{ file: new FakeFile('empty.txt', 0), key: 'empty.txt' }], null);
    await settle();
    expect(server.puts).toEqual([]);
    expect(item.state).toBe('saved');
  });

  it('computes the rate and the time left from the bytes sent in this session', async () => {
    const { server, clock, queue } = setup();
    let release: () => void = () => undefined;
    server.hold = new Promise(resolve => (release = resolve));
    const [item] = queue.add([{ file: new FakeFile('a.bin', 16 * MiB), key: 'a.bin' }], null);
    await settle();
    expect(item.state).toBe('sending');
    expect(secondsLeft(item)).toBeNull(); // no chunk answered yet
    server.hold = null;
    clock.time += 2000; // the first 8 MiB took 2 s
    release();
    await settle();
    expect(item.state).toBe('saved');
    expect(item.rate).toBe(8 * MiB); // 16 MiB in 2 s (the second chunk took no time)
  });

  it('runs at most `parallel` files at once, the rest wait their turn', async () => {
    const { server, queue } = setup(2);
    server.hold = new Promise(() => undefined); // every PUT hangs
    const items = queue.add(
      ['a', 'b', 'c'].map(name => ({ file: new FakeFile(name, MiB), key: name })),
      null
    );
    await settle();
    expect(items.map(i => i.state)).toEqual(['sending', 'sending', 'waiting']);
    await queue.cancel(items[0]);
    await settle();
    expect(items[2].state).toBe('sending'); // its turn came
    expect(queue.items.map(i => i.key)).toEqual(['b', 'c']);
  });

  it('cancel mid-file stops sending, drops the item and removes the staged bytes', async () => {
    const { server, queue } = setup();
    let release: () => void = () => undefined;
    const [item] = queue.add([{ file: new FakeFile('big.bin', 40 * MiB), key: 'big.bin' }], null);
    server.nextPut = () => {
      server.hold = new Promise(resolve => (release = resolve));
    };
    await settle();
    // the first chunk went through; the second hangs until it is cancelled
    server.nextPut = null;
    await settle();
    expect(item.state).toBe('sending');
    await queue.cancel(item);
    release();
    await settle();
    expect(queue.items).toEqual([]);
    expect(server.removes).toEqual(['u1']);
    expect(server.commits).toEqual([]);
    expect(server.uploads.get('u1')!.removed).toBe(true);
  });

  it('cancel while the server is still creating the upload removes it once created', async () => {
    const { server, queue } = setup();
    const create = server.create.bind(server);
    let answer: () => void = () => undefined;
    server.create = request => new Promise(resolve => (answer = () => resolve(create(request))));
    const [item] = queue.add([{ file: new FakeFile('a.bin', MiB), key: 'a.bin' }], null);
    await settle();
    expect(item.state).toBe('starting');
    await queue.cancel(item);
    answer();
    await settle();
    expect(server.removes).toEqual(['u1']);
    expect(server.puts).toEqual([]);
    expect(queue.items).toEqual([]);
  });

  it('cancel of a waiting file never reaches the server', async () => {
    const { server, queue } = setup(1);
    server.hold = new Promise(() => undefined);
    const [, second] = queue.add(
      ['a', 'b'].map(name => ({ file: new FakeFile(name, MiB), key: name })),
      null
    );
    await settle();
    await queue.cancel(second);
    expect(server.uploads.size).toBe(1);
    expect(server.removes).toEqual([]);
  });

  it('cancel all removes every unfinished upload and keeps what was saved', async () => {
    const { server, queue } = setup();
    queue.add([{ file: new FakeFile('small', 10), key: 'small' }], null);
    await settle();
    server.hold = new Promise(() => undefined);
    queue.add(
      ['a', 'b'].map(name => ({ file: new FakeFile(name, MiB), key: name })),
      null
    );
    await settle();
    await queue.cancelAll();
    await settle();
    expect(queue.items.map(i => [i.key, i.state])).toEqual([['small', 'saved']]);
    expect(server.removes.sort()).toEqual(['u2', 'u3']);
    queue.clearSaved();
    expect(queue.items).toEqual([]);
  });

  it('a 409 with the server offset makes the next chunk start there', async () => {
    const { server, queue } = setup();
    server.nextPut = id => {
      server.uploads.get(id)!.received = 3 * MiB; // part of a dropped chunk arrived
    };
    const [item] = queue.add([{ file: new FakeFile('a.bin', 10 * MiB), key: 'a.bin' }], null);
    await settle();
    expect(server.puts.map(p => [p.offset / MiB, p.length / MiB])).toEqual([[3, 7]]);
    expect(item.state).toBe('saved');
    expect(item.received).toBe(10 * MiB);
  });

  it('retries a chunk that got no answer, then fails with the reason', async () => {
    const { server, clock, queue } = setup();
    let failures = 0;
    const put = server.put.bind(server);
    server.put = async (...args) => {
      failures += 1;
      throw new UploadError(0, 'the Jupyter server cannot be reached');
      return put(...args);
    };
    const [item] = queue.add([{ file: new FakeFile('a.bin', MiB), key: 'a.bin' }], null);
    await settle();
    expect(failures).toBe(3); // the first try and two retries
    expect(clock.slept).toEqual([1000, 2000]);
    expect(item.state).toBe('failed');
    expect(item.error).toBe('the Jupyter server cannot be reached');
    // Retry goes on from the server's offset once the server is back
    server.put = put;
    queue.resume(item);
    await settle();
    expect(item.state).toBe('saved');
  });

  it('waits while an aborted request still holds the upload (409 retry)', async () => {
    const { server, clock, queue } = setup();
    let busy = 2;
    const put = server.put.bind(server);
    server.put = async (...args) => {
      if (busy-- > 0) {
        throw new UploadError(409, 'upload is being written by another request', null, true);
      }
      return put(...args);
    };
    const [item] = queue.add([{ file: new FakeFile('a.bin', MiB), key: 'a.bin' }], null);
    await settle();
    expect(clock.slept).toEqual([300, 300]);
    expect(item.state).toBe('saved');
  });

  it('a refused chunk fails the file with the server message and sends nothing more', async () => {
    const { server, queue } = setup();
    server.nextPut = () => {
      throw new UploadError(413, 'not enough free disk space on the Jupyter host');
    };
    const [item] = queue.add([{ file: new FakeFile('a.bin', 20 * MiB), key: 'a.bin' }], null);
    await settle();
    expect(item.state).toBe('failed');
    expect(item.error).toContain('free disk space');
    expect(server.puts).toEqual([]);
    expect(server.commits).toEqual([]);
  });

  it('a refused commit can be saved again', async () => {
    const { server, queue } = setup();
    const commit = server.commit.bind(server);
    server.commit = async () => {
      throw new UploadError(503, 'the database cannot be reached');
    };
    const [item] = queue.add([{ file: new FakeFile('a.bin', MiB), key: 'a.bin' }], null);
    await settle();
    expect(item.state).toBe('failed');
    expect(item.received).toBe(MiB);
    server.commit = commit;
    await queue.save(item);
    expect(item.state).toBe('saved');
  });

  describe('after a page reload', () => {
    async function reloaded() {
      const { server, queue } = setup();
      server.hold = new Promise(() => undefined);
      queue.add([{ file: new FakeFile('big.bin', 20 * MiB), key: 'runs/big.bin' }], 'lab');
      await settle();
      server.uploads.get('u1')!.received = 12 * MiB; // what arrived before the reload
      server.hold = null;
      const fresh = new UploadQueue(server, { ...queue.options, chunkSize: MiB }, new FakeClock());
      return { server, queue: fresh };
    }

    it('lists the unfinished uploads as paused, with their offset', async () => {
      const { queue } = await reloaded();
      const [item] = await queue.restore();
      expect(item).toMatchObject({
        id: 'u1',
        key: 'runs/big.bin',
        state: 'paused',
        received: 12 * MiB,
        file: null,
        chunkSize: 8 * MiB
      });
      expect(await queue.restore()).toEqual([]); // listed once
    });

    it('resumes from the server offset with the same file and saves it', async () => {
      const { server, queue } = await reloaded();
      const [item] = await queue.restore();
      expect(() => queue.resume(item)).toThrow('pick big.bin again');
      expect(() => queue.resume(item, new FakeFile('big.bin', 19 * MiB))).toThrow('not the file');
      expect(() => queue.resume(item, new FakeFile('other.bin', 20 * MiB))).toThrow('not the file');
      expect(item.state).toBe('paused');
      queue.resume(item, new FakeFile('big.bin', 20 * MiB));
      await settle();
      expect(server.puts.map(p => [p.offset / MiB, p.length / MiB])).toEqual([[12, 8]]);
      expect(item.state).toBe('saved');
      expect(server.commits).toEqual(['u1']);
    });

    it('finds the paused upload a file dropped again resumes', async () => {
      const { queue } = await reloaded();
      const [item] = await queue.restore();
      const same = new FakeFile('big.bin', 20 * MiB);
      expect(queue.pausedFor(same, 'runs/big.bin')).toBe(item);
      expect(queue.pausedFor(same, 'big.bin')).toBeUndefined(); // another key: a new upload
      expect(queue.pausedFor(new FakeFile('big.bin', MiB), 'runs/big.bin')).toBeUndefined();
    });

    it('a complete upload is listed as complete and saved on request', async () => {
      const { server, queue } = await reloaded();
      server.uploads.get('u1')!.received = 20 * MiB;
      const [item] = await queue.restore();
      expect(item.state).toBe('complete');
      await queue.save(item);
      expect(item.state).toBe('saved');
    });

    it('cancel of a paused upload removes it on the server', async () => {
      const { server, queue } = await reloaded();
      const [item] = await queue.restore();
      await queue.cancel(item);
      expect(server.removes).toEqual(['u1']);
      expect(await queue.restore()).toEqual([]);
    });

    it('a cancel the server refuses shows the upload again, failed', async () => {
      const { server, queue } = await reloaded();
      const [item] = await queue.restore();
      server.remove = async () => {
        throw new UploadError(503, 'disk gone');
      };
      await queue.cancel(item);
      expect(queue.items).toEqual([item]);
      expect(item.state).toBe('failed');
      expect(item.error).toContain('the staged bytes are still there: disk gone');
    });

    it('an upload gone from the server (404) counts as cancelled', async () => {
      const { server, queue } = await reloaded();
      const [item] = await queue.restore();
      server.uploads.get('u1')!.removed = true;
      await queue.cancel(item);
      expect(queue.items).toEqual([]);
    });
  });
});

describe('keys and times', () => {
  it('puts a key under the prefix typed', () => {
    expect(withPrefix('', 'a.csv')).toBe('a.csv');
    expect(withPrefix(' runs/7/ ', 'plates/a.csv')).toBe('runs/7/plates/a.csv');
    expect(withPrefix('/x', 'a.csv')).toBe('x/a.csv');
  });

  it('says the time left in words', () => {
    expect(formatDuration(null)).toBe('');
    expect(formatDuration(Infinity)).toBe('');
    expect(formatDuration(0.2)).toBe('1 s');
    expect(formatDuration(75)).toBe('1 min 15 s');
    expect(formatDuration(4000)).toBe('1 h 6 min');
  });
});

/**
 * The server's rule for several chunks in flight: a chunk starts at `received` or at a later
 * multiple of the chunk size; `received` is the prefix without a gap. Each PUT waits until
 * the test lets it finish, so chunks can be made to arrive in any order.
 */
class RangeServer extends FakeServer {
  waiting: (() => void)[] = [];
  inFlight = 0;
  maxInFlight = 0;
  private ranges = new Map<string, [number, number][]>();

  async put(id: string, offset: number, body: Blob): Promise<number> {
    const upload = this.uploads.get(id) as IStaged;
    if (offset !== upload.received && (offset < upload.received || offset % upload.chunk_size)) {
      throw new UploadError(409, `send the chunk at offset ${upload.received}`, upload.received);
    }
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    await new Promise<void>(resolve => this.waiting.push(resolve));
    this.inFlight -= 1;
    this.puts.push({ id, offset, length: body.size });
    const ranges = [...(this.ranges.get(id) ?? []), [offset, offset + body.size] as [number, number]];
    ranges.sort((a, b) => a[0] - b[0]);
    for (const [a, b] of ranges) {
      if (a <= upload.received) {
        upload.received = Math.max(upload.received, b);
      }
    }
    this.ranges.set(id, ranges);
    return upload.received;
  }
}

describe('UploadQueue with several chunks in flight', () => {
  it('sends chunks side by side; received is the server prefix; saved when all arrived', async () => {
    const server = new RangeServer();
    const queue = new UploadQueue(
      server,
      { parallel: 1, chunkSize: 4 * MiB, inFlight: 3, networkTries: 2, retryMs: 1000, busyTries: 3, busyMs: 300 },
      new FakeClock()
    );
    const [item] = queue.add([{ file: new FakeFile('stack.tif', 30 * MiB), key: 'stack.tif' }], null);
    await settle();
    expect(server.maxInFlight).toBe(3);
    expect(server.waiting.length).toBe(3);
    // the last of the three arrives first: nothing counts as received yet
    server.waiting.splice(2, 1)[0]();
    await settle();
    expect(item.received).toBe(0);
    while (server.waiting.length > 0) {
      server.waiting.shift()!();
      await settle();
    }
    expect(server.maxInFlight).toBe(3);
    expect(item.received).toBe(30 * MiB);
    expect(item.state).toBe('saved');
    const sent = server.puts.map(p => [p.offset / MiB, p.length / MiB]).sort((a, b) => a[0] - b[0]);
    expect(sent).toEqual([
      [0, 8],
      [8, 8],
      [16, 8],
      [24, 6]
    ]);
  });

  it('resumes a reloaded upload from the server offset, then aligns to the chunk size', async () => {
    const server = new RangeServer();
    const queue = new UploadQueue(
      server,
      { parallel: 1, chunkSize: 4 * MiB, inFlight: 2, networkTries: 2, retryMs: 1000, busyTries: 3, busyMs: 300 },
      new FakeClock()
    );
    const upload = await server.create({ name: 'a.bin', size: 20 * MiB, key: 'a.bin', instance: null });
    (server.uploads.get(upload.id) as IStaged).received = 3 * MiB; // a prefix from before the reload
    await queue.restore();
    const [item] = queue.items;
    queue.resume(item, new FakeFile('a.bin', 20 * MiB));
    for (let i = 0; i < 10 && item.state !== 'saved'; i++) {
      await settle();
      server.waiting.splice(0).forEach(release => release());
    }
    await settle();
    expect(item.state).toBe('saved');
    const sent = server.puts.map(p => [p.offset / MiB, p.length / MiB]).sort((a, b) => a[0] - b[0]);
    expect(sent).toEqual([
      [3, 5],
      [8, 8],
      [16, 4]
    ]);
  });
});
