/**
 * Pure formatting: no JupyterLab import, so jest runs it in plain Node.
 */

/** Row counts by state, as `GET status` reports them (one grouped query). */
export interface IStatusCounts {
  committed: number;
  trashed: number;
  pending: number;
  deleting: number;
  lost: number;
  expired: number;
}

/** The last full check's summary (`null` before the first one). */
export interface ICheckSummary {
  checked_at: string;
  deep: boolean;
  is_consistent: boolean;
  n_ok: number;
  missing: number;
  orphans: number;
  mismatched: number;
  stuck: number;
  /** An incremental check's note: what it did not look for (strays written outside lamin_nb). */
  not_looked_for?: string | null;
}

export interface IStatus {
  instance: string;
  counts: IStatusCounts;
  check: ICheckSummary | null;
  check_running: boolean;
}

export type Level = 'ok' | 'warn' | 'error' | 'unknown';

export interface IStatusText {
  level: Level;
  text: string;
  title: string;
}

/** 1234 -> "1,234" (the same in every locale, like the status bar's other items). */
export function formatCount(n: number): string {
  const digits = Math.trunc(Math.abs(n)).toString();
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return n < 0 ? `-${grouped}` : grouped;
}

function plural(n: number, one: string, many: string = one + 's'): string {
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

/**
 * The status-bar text: the worst thing first.
 * `lamin ✗ 1 missing` (data lost or orphaned), `lamin ⚠ 2 pending` (writes in flight or
 * waiting for repair), else `lamin ✓ 1,234` (committed artifacts).
 */
export function statusText(status: IStatus): IStatusText {
  const { counts, check } = status;
  const when = check ? ` (checked ${check.checked_at.replace('T', ' ').slice(0, 19)} UTC)` : '';
  const problems: string[] = [];
  if (check) {
    if (check.missing) {
      problems.push(`${formatCount(check.missing)} missing`);
    }
    if (check.mismatched) {
      problems.push(`${formatCount(check.mismatched)} mismatched`);
    }
    if (check.orphans) {
      problems.push(plural(check.orphans, 'orphan'));
    }
  }
  if (counts.lost) {
    problems.push(`${formatCount(counts.lost)} lost`);
  }
  if (problems.length) {
    return {
      level: 'error',
      text: `lamin ✗ ${problems[0]}`,
      title: `${status.instance}: storage and database disagree: ${problems.join(', ')}${when}${check ? note(check) : ''}. Click for the consistency view.`
    };
  }
  const inFlight = counts.pending + counts.deleting;
  if (inFlight || (check && check.stuck)) {
    const stuck = Math.max(counts.expired, check ? check.stuck : 0);
    const detail = stuck ? `, ${formatCount(stuck)} waiting for repair` : ', being written';
    return {
      level: 'warn',
      text: `lamin ⚠ ${formatCount(Math.max(inFlight, stuck))} pending`,
      title: `${status.instance}: ${plural(inFlight, 'row')} pending or deleting${detail}${when}${check ? note(check) : ''}`
    };
  }
  return {
    level: check ? 'ok' : 'unknown',
    text: `lamin ✓ ${formatCount(counts.committed)}`,
    title: check
      ? `${status.instance}: ${plural(counts.committed, 'artifact')}, storage and database in sync${when}${note(check)}`
      : `${status.instance}: ${plural(counts.committed, 'artifact')}; not checked yet`
  };
}

/** An incremental check's note, for the tooltip: an ✓ from it does not cover strays. */
function note(check: ICheckSummary): string {
  return check.not_looked_for ? `. Note: ${check.not_looked_for}` : '';
}

/** 1536 -> "1.5 KiB" (binary units, as the notebook's progress panel). */
export function humanSize(n: number | null | undefined): string {
  if (n === null || n === undefined) {
    return '?';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A Python string literal for any text (JSON strings are valid Python literals). */
export function pyString(text: string): string {
  return JSON.stringify(text);
}

export interface IArtifactRef {
  uid: string;
  key: string | null;
  version: number;
  otype: string | null;
}

/** The cell "Insert load code" puts into the notebook: it runs as is. */
export function loadCode(instance: string, artifact: IArtifactRef): string {
  const what = artifact.key
    ? `${artifact.key}, version ${artifact.version}`
    : `version ${artifact.version}`;
  const variable =
    artifact.otype === 'AnnData' ? 'adata' : artifact.otype === 'DataFrame' ? 'df' : 'path';
  // one line for a comment: a key may hold any character but a newline must not end it
  const comment = what.replace(/[\r\n]+/g, ' ');
  return [
    'import lamin_nb as ln',
    '',
    `ln.connect(${pyString(instance)})`,
    `artifact = ln.Artifact.get(${pyString(artifact.uid)})  # ${comment}`,
    `${variable} = artifact.load()`,
    variable
  ].join('\n');
}

/** "2026-12-02T07:50:00.123456Z" -> "2026-12-02 07:50:00" (UTC, as stored). */
export function shortTime(iso: string | null | undefined): string {
  return iso ? iso.replace('T', ' ').slice(0, 19) : '';
}

/** 75 -> "1 min 15 s", 4000 -> "1 h 7 min" (time left of an upload). */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds) || seconds < 0) {
    return '';
  }
  const s = Math.ceil(seconds);
  if (s < 60) {
    return `${s} s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)} min ${s % 60} s`;
  }
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** One entry of `GET transfers` (`ln.uploads()`): a large upload started and not finished. */
export interface ITransfer {
  uid: string;
  key: string | null;
  size: number;
  bytes_done: number;
  parts_done: number;
  parts_total: number;
  started_at: string;
  owner: string | null;
  /** true: its writer runs; false: it is gone; null: cannot be told from here. */
  alive: boolean | null;
  source: string | null;
  resumable_for: number;
  can_resume: boolean;
  can_discard: boolean;
}

/**
 * The line of one upload, as the notebook's UploadsPanel prints it:
 * `big.h5ad: 717.0 MiB of 1.0 GiB (90 of 128 parts), interrupted; kept 55 min 0 s more`.
 */
export function transferLine(t: ITransfer): string {
  const state = t.alive === true ? 'in progress' : t.alive === false ? 'interrupted' : 'unknown writer';
  const kept = t.can_discard && t.resumable_for > 0 ? `; kept ${formatDuration(t.resumable_for)} more` : '';
  return `${t.key ?? t.uid}: ${humanSize(t.bytes_done)} of ${humanSize(t.size)} (${t.parts_done} of ${t.parts_total} parts), ${state}${kept}`;
}
