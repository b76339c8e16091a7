/**
 * Artifacts newest first, searchable by key prefix, in a virtual list: only the rows in view
 * exist in the DOM and pages of 100 are fetched as they scroll in, so 10,000 (or a million)
 * artifacts render as fast as ten.
 */
import { ApiError, IArtifact, LaminApi } from './api';
import { clear, h } from './dom';
import { formatCount, humanSize, shortTime } from './format';

export const ROW_HEIGHT = 44;
const PAGE = 100;
const OVERSCAN = 6;
const SEARCH_DELAY_MS = 250;

export class ArtifactList {
  readonly node: HTMLElement;
  readonly search: HTMLInputElement;
  private readonly summary: HTMLElement;
  private readonly viewport: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly rows: HTMLElement;
  private pages = new Map<number, IArtifact[] | 'loading'>();
  private total = 0;
  private generation = 0;
  private active = 0;
  private frame = 0;
  private searchTimer = 0;
  /** Milliseconds from reload() to the first rows on screen (the sidebar's first render). */
  lastRenderMs = 0;

  constructor(
    private readonly api: LaminApi,
    private readonly trashed: boolean,
    private readonly onOpen: (artifact: IArtifact) => void
  ) {
    const label = trashed ? 'Search the trash by key prefix' : 'Search artifacts by key prefix';
    this.search = h('input', {
      type: 'search',
      className: 'lamin-search jp-mod-styled',
      placeholder: 'key prefix, e.g. runs/7/',
      'aria-label': label,
      spellcheck: 'false',
      onInput: () => this.searchSoon(),
      onKeydown: (event: KeyboardEvent) => {
        if (event.key === 'Enter') {
          this.searchNow();
        } else if (event.key === 'ArrowDown') {
          event.preventDefault();
          this.focusRow(this.active);
        }
      }
    });
    this.summary = h('div', { className: 'lamin-summary', 'aria-live': 'polite' });
    this.spacer = h('div', { className: 'lamin-spacer' });
    this.rows = h('div', { className: 'lamin-rows' });
    this.viewport = h(
      'div',
      {
        className: 'lamin-list',
        role: 'listbox',
        'aria-label': trashed ? 'Artifacts in the trash' : 'Artifacts, newest first',
        onScroll: () => this.renderSoon(),
        onKeydown: (event: KeyboardEvent) => this.onKey(event)
      },
      this.spacer,
      this.rows
    );
    this.node = h('div', { className: 'lamin-artifacts' }, this.search, this.summary, this.viewport);
  }

  get prefix(): string {
    return this.search.value;
  }

  /** Forget every page and show the first one again (search, instance switch, a save). */
  async reload(): Promise<void> {
    const started = performance.now();
    this.generation += 1;
    this.pages.clear();
    this.active = 0;
    this.viewport.scrollTop = 0;
    this.summary.textContent = 'loading…';
    await this.load(0);
    this.render();
    this.lastRenderMs = performance.now() - started;
    this.node.dataset.renderMs = this.lastRenderMs.toFixed(1);
  }

  private searchSoon(): void {
    window.clearTimeout(this.searchTimer);
    this.searchTimer = window.setTimeout(() => this.searchNow(), SEARCH_DELAY_MS);
  }

  private searchNow(): void {
    window.clearTimeout(this.searchTimer);
    void this.reload();
  }

  private async load(page: number): Promise<void> {
    if (this.pages.has(page)) {
      return;
    }
    const generation = this.generation;
    this.pages.set(page, 'loading');
    try {
      const result = await this.api.artifacts(this.prefix, page * PAGE, PAGE, this.trashed);
      if (generation !== this.generation) {
        return; // a newer search or reload started meanwhile
      }
      this.total = result.total;
      this.pages.set(page, result.artifacts);
      this.showSummary();
    } catch (error) {
      if (generation === this.generation) {
        this.pages.delete(page);
        this.total = 0;
        this.summary.textContent =
          error instanceof ApiError ? error.message : `cannot list artifacts: ${error}`;
        this.summary.classList.add('lamin-error-text');
      }
    }
  }

  private showSummary(): void {
    this.summary.classList.remove('lamin-error-text');
    const what = this.trashed ? 'in the trash' : 'artifacts';
    const n = formatCount(this.total);
    this.summary.textContent = this.prefix
      ? `${n} ${this.trashed ? 'in the trash' : 'artifacts'} under “${this.prefix}”`
      : this.total === 0 && !this.trashed
        ? 'no artifacts yet: save one with ln.Artifact(path, key=...).save() or “Save to Lamin…”'
        : `${n} ${what}`;
  }

  private renderSoon(): void {
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.render();
      });
    }
  }

  private render(): void {
    this.spacer.style.height = `${this.total * ROW_HEIGHT}px`;
    const height = this.viewport.clientHeight || 600;
    const first = Math.max(0, Math.floor(this.viewport.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(
      this.total,
      Math.ceil((this.viewport.scrollTop + height) / ROW_HEIGHT) + OVERSCAN
    );
    const missing = new Set<number>();
    const rows: HTMLElement[] = [];
    for (let index = first; index < last; index++) {
      const page = this.pages.get(Math.floor(index / PAGE));
      const artifact = Array.isArray(page) ? page[index % PAGE] : undefined;
      if (!artifact) {
        missing.add(Math.floor(index / PAGE));
      }
      rows.push(this.row(index, artifact));
    }
    clear(this.rows, ...rows);
    for (const page of missing) {
      if (!this.pages.has(page)) {
        const generation = this.generation;
        void this.load(page).then(() => generation === this.generation && this.renderSoon());
      }
    }
  }

  private row(index: number, artifact: IArtifact | undefined): HTMLElement {
    const style = `top: ${index * ROW_HEIGHT}px; height: ${ROW_HEIGHT}px`;
    if (!artifact) {
      return h('div', { className: 'lamin-row lamin-row-loading', style }, '…');
    }
    const kind = artifact.otype || artifact.suffix || 'file';
    const meta = `v${artifact.version}${artifact.is_latest ? '' : ' (older)'} · ${humanSize(artifact.size)} · ${kind} · ${shortTime(artifact.created_at)}`;
    return h(
      'div',
      {
        className: `lamin-row${index === this.active ? ' lamin-mod-active' : ''}`,
        role: 'option',
        tabindex: index === this.active ? 0 : -1,
        'aria-selected': index === this.active ? 'true' : 'false',
        'data-index': index,
        'data-uid': artifact.uid,
        title: `${artifact.key ?? artifact.uid}\n${artifact.uid}`,
        style,
        onClick: () => {
          this.active = index;
          this.onOpen(artifact);
        },
        onFocus: () => {
          this.active = index;
        }
      },
      h('div', { className: 'lamin-row-key' }, artifact.key ?? `(no key) ${artifact.uid}`),
      h('div', { className: 'lamin-row-meta' }, meta)
    );
  }

  private onKey(event: KeyboardEvent): void {
    const moves: Record<string, number> = {
      ArrowDown: 1,
      ArrowUp: -1,
      PageDown: 10,
      PageUp: -10,
      Home: -Infinity,
      End: Infinity
    };
    if (event.key in moves) {
      event.preventDefault();
      const next = Math.max(0, Math.min(this.total - 1, this.active + moves[event.key]));
      this.focusRow(next);
    } else if (event.key === 'Enter') {
      const page = this.pages.get(Math.floor(this.active / PAGE));
      const artifact = Array.isArray(page) ? page[this.active % PAGE] : undefined;
      if (artifact) {
        this.onOpen(artifact);
      }
    }
  }

  /** Scroll `index` into view and give it the keyboard focus. */
  focusRow(index: number): void {
    if (this.total === 0) {
      return;
    }
    this.active = index;
    const top = index * ROW_HEIGHT;
    const view = this.viewport;
    if (top < view.scrollTop) {
      view.scrollTop = top;
    } else if (top + ROW_HEIGHT > view.scrollTop + view.clientHeight) {
      view.scrollTop = top + ROW_HEIGHT - view.clientHeight;
    }
    this.render();
    const row = this.rows.querySelector<HTMLElement>(`[data-index="${index}"]`);
    row?.focus();
  }
}
