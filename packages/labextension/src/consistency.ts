/**
 * The consistency view: counts and lists from `ln.check()`, a deep check on demand, and
 * repair as in the notebook's ConsistencyPanel: the plan (dry run) first, applied only after
 * the user confirms it. Below the counts, the resumable uploads with Resume and Discard
 * (`TransfersView`); after either, the view checks again.
 */
import { ApiError, IIssue, IRepairPlan, IReport, LaminApi } from './api';
import { clear, h } from './dom';
import { formatCount, shortTime } from './format';
import { TransfersView } from './transfers';

const LISTED = 50;

export class ConsistencyView {
  readonly node: HTMLElement;
  private readonly message: HTMLElement;
  private readonly result: HTMLElement;
  private readonly planBox: HTMLElement;
  readonly transfers: TransfersView;
  private readonly buttons: HTMLButtonElement[];
  private readonly allLeases: HTMLInputElement;
  private readonly markLost: HTMLInputElement;
  private plan: IRepairPlan | null = null;
  report: IReport | null = null;

  constructor(
    private readonly api: LaminApi,
    private readonly changed: () => void
  ) {
    const check = h(
      'button',
      { className: 'lamin-button lamin-check jp-mod-accept', onClick: () => this.check(false) },
      'Check'
    );
    const deep = h(
      'button',
      {
        className: 'lamin-button lamin-deep-check',
        title: 'Also re-hash every object (reads all the data)',
        onClick: () => this.check(true)
      },
      'Deep check'
    );
    const repair = h(
      'button',
      { className: 'lamin-button lamin-repair', onClick: () => this.showPlan() },
      'Repair…'
    );
    this.buttons = [check, deep, repair];
    this.allLeases = h('input', { type: 'checkbox', className: 'lamin-all-leases' });
    this.markLost = h('input', { type: 'checkbox', className: 'lamin-mark-lost' });
    const options = h(
      'div',
      { className: 'lamin-options' },
      h(
        'label',
        { title: 'grace_seconds=0: only when no kernel is writing to this instance' },
        this.allLeases,
        ' no writer is running (treat every lease as expired)'
      ),
      h(
        'label',
        { title: 'mark_lost=True: rows whose object is gone become "lost"' },
        this.markLost,
        ' mark rows of missing objects as lost'
      )
    );
    this.message = h('div', { className: 'lamin-message', role: 'status', 'aria-live': 'polite' });
    this.result = h('div', { className: 'lamin-report' });
    this.planBox = h('div', { className: 'lamin-plan' });
    this.transfers = new TransfersView(api, () => void this.check(false));
    this.node = h(
      'div',
      { className: 'lamin-consistency' },
      h('div', { className: 'lamin-actions' }, check, deep, repair),
      options,
      this.message,
      this.result,
      this.transfers.node,
      this.planBox
    );
  }

  private busy(text: string): void {
    this.buttons.forEach(b => (b.disabled = true));
    this.say(text);
  }

  private idle(): void {
    this.buttons.forEach(b => (b.disabled = false));
  }

  private say(text: string, isError = false): void {
    this.message.textContent = text;
    this.message.classList.toggle('lamin-error-text', isError);
  }

  async check(deep: boolean): Promise<void> {
    this.busy(deep ? 'deep check: re-hashing every object…' : 'checking…');
    clear(this.planBox);
    this.plan = null;
    const transfers = this.transfers.reload(); // side by side with the check
    try {
      this.report = await this.api.check(deep);
      this.say('');
      this.renderReport(this.report);
      await transfers;
    } catch (error) {
      this.say(error instanceof ApiError ? error.message : String(error), true);
    } finally {
      this.idle();
      this.changed();
    }
  }

  private renderReport(report: IReport): void {
    const verdict = report.is_consistent
      ? h('div', { className: 'lamin-verdict lamin-ok' }, '✓ storage and database are consistent')
      : h('div', { className: 'lamin-verdict lamin-bad' }, '✗ storage and database disagree');
    const counts: [string, number, string][] = [
      ['ok', report.n_ok, 'ok'],
      ['missing objects', report.missing.length, 'bad'],
      ['orphans', report.orphans.length, 'bad'],
      ['mismatched', report.mismatched.length, 'bad'],
      ['pending', report.pending.length, 'warn'],
      ['deleting', report.deleting.length, 'warn'],
      ['lost', report.lost.length, 'warn']
    ];
    const table = h(
      'table',
      { className: 'lamin-counts' },
      ...counts.map(([label, n, level]) =>
        h(
          'tr',
          { className: n && level !== 'ok' ? `lamin-${level}` : '' },
          h('th', { scope: 'row' }, label),
          h('td', { 'data-count': label }, formatCount(n))
        )
      )
    );
    const lists = [
      this.list('missing objects', report.missing, i => `${i.name} (key ${i.key ?? '—'})`),
      this.list('orphans', report.orphans, i => `${i.name} (${i.size} bytes)`),
      this.list('mismatched', report.mismatched, i => `${i.name}: ${i.kind} ${i.expected} ≠ ${i.actual}`),
      this.list('pending', report.pending, i => `${i.name} (${i.expired ? 'expired' : 'in flight'}, ${i.owner ?? '?'})`),
      this.list('deleting', report.deleting, i => `${i.name} (${i.expired ? 'expired' : 'in flight'})`)
    ];
    clear(
      this.result,
      verdict,
      h(
        'div',
        { className: 'lamin-summary' },
        `${report.deep ? 'deep check' : 'check'} at ${shortTime(report.checked_at)} UTC · ${formatCount(report.n_rows)} rows, ${formatCount(report.n_objects)} objects`
      ),
      table,
      ...lists
    );
  }

  private list(title: string, issues: IIssue[], text: (i: IIssue) => string): HTMLElement | null {
    if (!issues.length) {
      return null;
    }
    const more = issues.length > LISTED ? h('li', {}, `… and ${issues.length - LISTED} more`) : null;
    return h(
      'details',
      { className: 'lamin-issues', open: true },
      h('summary', {}, `${title} (${issues.length})`),
      h('ul', {}, ...issues.slice(0, LISTED).map(i => h('li', {}, text(i))), more)
    );
  }

  private grace(): number {
    return this.allLeases.checked ? 0 : 3600;
  }

  async showPlan(): Promise<void> {
    this.busy('planning the repair (dry run: nothing changes)…');
    try {
      this.plan = await this.api.repair(false, this.grace(), this.markLost.checked);
      this.say('');
      this.renderPlan(this.plan);
    } catch (error) {
      this.say(error instanceof ApiError ? error.message : String(error), true);
    } finally {
      this.idle();
    }
  }

  private renderPlan(plan: IRepairPlan): void {
    if (!plan.actions.length) {
      clear(this.planBox, h('div', { className: 'lamin-summary' }, plan.summary));
      return;
    }
    const confirm = h(
      'button',
      { className: 'lamin-button lamin-confirm jp-mod-warn', onClick: () => this.apply() },
      `Confirm repair (${plan.actions.length} action${plan.actions.length === 1 ? '' : 's'})`
    );
    const cancel = h(
      'button',
      { className: 'lamin-button', onClick: () => clear(this.planBox) },
      'Cancel'
    );
    clear(
      this.planBox,
      h('h4', {}, 'Repair plan'),
      h('div', { className: 'lamin-summary' }, plan.summary),
      h(
        'ul',
        { className: 'lamin-plan-actions' },
        ...plan.actions.map(a => h('li', {}, `${a.kind}: ${a.target} ${a.detail}`.trim()))
      ),
      h('div', { className: 'lamin-actions' }, confirm, cancel)
    );
    confirm.focus();
  }

  private async apply(): Promise<void> {
    this.busy('repairing…');
    try {
      const done = await this.api.repair(true, this.grace(), this.markLost.checked);
      const failed = done.actions.filter(a => a.error);
      clear(
        this.planBox,
        h('div', { className: 'lamin-summary' }, done.summary),
        failed.length
          ? h('ul', { className: 'lamin-bad' }, ...failed.map(a => h('li', {}, `${a.kind}: ${a.target}: ${a.error}`)))
          : null
      );
      if (done.after) {
        this.report = done.after;
        this.renderReport(done.after);
      }
      await this.transfers.reload(); // repair aborts uploads past the grace period
      this.say(failed.length ? `${failed.length} repair action(s) failed` : 'repaired', !!failed.length);
    } catch (error) {
      this.say(error instanceof ApiError ? error.message : String(error), true);
    } finally {
      this.idle();
      this.changed();
    }
  }
}
