import {
  formatCount,
  humanSize,
  IStatus,
  loadCode,
  ITransfer,
  shortTime,
  statusText,
  transferLine
} from '../src/format';

function status(counts: Partial<IStatus['counts']>, check: Partial<IStatus['check']> | null): IStatus {
  return {
    instance: 'lab',
    counts: { committed: 0, trashed: 0, pending: 0, deleting: 0, lost: 0, expired: 0, ...counts },
    check:
      check === null
        ? null
        : {
            checked_at: '2026-12-02T07:50:00.123456Z',
            deep: false,
            is_consistent: true,
            n_ok: 0,
            missing: 0,
            orphans: 0,
            mismatched: 0,
            stuck: 0,
            ...check
          },
    check_running: false
  };
}

describe('formatCount', () => {
  it('groups thousands with commas', () => {
    expect(formatCount(0)).toBe('0');
    expect(formatCount(999)).toBe('999');
    expect(formatCount(1234)).toBe('1,234');
    expect(formatCount(1234567)).toBe('1,234,567');
    expect(formatCount(-1000)).toBe('-1,000');
  });
});

describe('statusText', () => {
  it('is a check mark with the count when all is in sync', () => {
    const s = statusText(status({ committed: 1234 }, { n_ok: 1234 }));
    expect(s.text).toBe('lamin ✓ 1,234');
    expect(s.level).toBe('ok');
    expect(s.title).toContain('2026-12-02 07:50:00 UTC');
  });

  it('says "not checked yet" before the first check', () => {
    const s = statusText(status({ committed: 3 }, null));
    expect(s.text).toBe('lamin ✓ 3');
    expect(s.level).toBe('unknown');
    expect(s.title).toContain('not checked yet');
  });

  it('warns about rows in flight', () => {
    const s = statusText(status({ committed: 10, pending: 2 }, {}));
    expect(s.text).toBe('lamin ⚠ 2 pending');
    expect(s.level).toBe('warn');
    expect(s.title).toContain('being written');
  });

  it('warns about expired leases found by the check even without pending counts', () => {
    const s = statusText(status({ committed: 10 }, { stuck: 1, is_consistent: false }));
    expect(s.text).toBe('lamin ⚠ 1 pending');
    expect(s.title).toContain('waiting for repair');
  });

  it('puts a missing object first', () => {
    const s = statusText(status({ committed: 5, pending: 1 }, { missing: 1, orphans: 3 }));
    expect(s.text).toBe('lamin ✗ 1 missing');
    expect(s.level).toBe('error');
    expect(s.title).toContain('1 missing, 3 orphans');
  });

  it('names orphans in singular and plural', () => {
    expect(statusText(status({}, { orphans: 1 })).text).toBe('lamin ✗ 1 orphan');
    expect(statusText(status({}, { orphans: 2 })).text).toBe('lamin ✗ 2 orphans');
    expect(statusText(status({ lost: 1 }, {})).text).toBe('lamin ✗ 1 lost');
  });
});

describe('statusText of an incremental check', () => {
  const note = 'objects written outside lamin_nb since the last full check are not looked for';

  it('keeps the check mark and adds the note to the tooltip', () => {
    const shown = statusText(status({ committed: 3 }, { not_looked_for: note }));
    expect(shown.text).toBe('lamin ✓ 3');
    expect(shown.title).toContain(`in sync (checked 2026-12-02 07:50:00 UTC). Note: ${note}`);
  });

  it('says nothing of it after a full check', () => {
    const shown = statusText(status({ committed: 3 }, { not_looked_for: null }));
    expect(shown.title).not.toContain('Note:');
  });
});

describe('transferLine', () => {
  const upload: ITransfer = {
    uid: 'u1',
    key: 'big.h5ad',
    size: 1024 ** 3,
    bytes_done: 717 * 1024 ** 2,
    parts_done: 90,
    parts_total: 128,
    started_at: '2026-12-02T07:50:00Z',
    owner: 'host:1:2:3',
    alive: false,
    source: '/data/big.h5ad',
    resumable_for: 3300,
    can_resume: true,
    can_discard: true
  };

  it('reads like the notebook panel, with the time it is kept', () => {
    expect(transferLine(upload)).toBe(
      'big.h5ad: 717.0 MiB of 1.0 GiB (90 of 128 parts), interrupted; kept 55 min 0 s more'
    );
  });

  it('shows a running upload without the time it is kept, and the uid without a key', () => {
    const running = { ...upload, key: null, alive: true, can_resume: false, can_discard: false };
    expect(transferLine(running)).toBe('u1: 717.0 MiB of 1.0 GiB (90 of 128 parts), in progress');
    expect(transferLine({ ...upload, alive: null })).toContain('unknown writer; kept');
  });
});

describe('humanSize', () => {
  it('uses binary units', () => {
    expect(humanSize(0)).toBe('0 B');
    expect(humanSize(1023)).toBe('1023 B');
    expect(humanSize(1536)).toBe('1.5 KiB');
    expect(humanSize(5 * 1024 ** 3)).toBe('5.0 GiB');
    expect(humanSize(null)).toBe('?');
  });
});

describe('loadCode', () => {
  it('connects to the shown instance and loads by uid', () => {
    const code = loadCode('lab', { uid: 'abc', key: 'raw/a.csv', version: 2, otype: null });
    expect(code.split('\n')).toEqual([
      'import lamin_nb as ln',
      '',
      'ln.connect("lab")',
      'artifact = ln.Artifact.get("abc")  # raw/a.csv, version 2',
      'path = artifact.load()',
      'path'
    ]);
  });

  it('names the variable after the kind and keeps odd keys in one comment line', () => {
    const code = loadCode('lab', { uid: 'u', key: 'a\nb"c', version: 1, otype: 'DataFrame' });
    expect(code).toContain('df = artifact.load()');
    expect(code).toContain('# a b"c, version 1');
    expect(code.split('\n')).toHaveLength(6);
  });
});

describe('shortTime', () => {
  it('drops the fraction and the T', () => {
    expect(shortTime('2026-12-02T07:50:00.123Z')).toBe('2026-12-02 07:50:00');
    expect(shortTime(null)).toBe('');
  });
});
