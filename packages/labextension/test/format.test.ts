import {
  formatCount,
  humanSize,
  IStatus,
  loadCode,
  shortTime,
  statusText
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
