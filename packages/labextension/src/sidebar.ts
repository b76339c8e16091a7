/** The left sidebar "Lamin": the instance, its artifacts, the trash, consistency, saves. */
import { Widget } from '@lumino/widgets';

import { ApiError, IArtifact, IInstanceResponse, LaminApi } from './api';
import { ArtifactList } from './artifacts';
import { ConsistencyView } from './consistency';
import { DetailView } from './detail';
import { clear, fields, h } from './dom';
import { carriesFiles, droppedFiles } from './drop';
import { ISaveRequest, SavesView } from './saves';
import { RestUploads } from './transport';
import { UploadQueue } from './uploadqueue';
import { UploadsView } from './uploads';

export type Tab = 'artifacts' | 'trash' | 'consistency' | 'saves' | 'uploads';
const TABS: [Tab, string][] = [
  ['artifacts', 'Artifacts'],
  ['trash', 'Trash'],
  ['consistency', 'Consistency'],
  ['saves', 'Saves'],
  ['uploads', 'Uploads']
];

export interface ISidebarOptions {
  api: LaminApi;
  insertCode(artifact: IArtifact): boolean;
  /** Something changed the instance's state: the status bar refreshes. */
  changed(): void;
}

export class LaminSidebar extends Widget {
  readonly api: LaminApi;
  readonly artifacts: ArtifactList;
  readonly trash: ArtifactList;
  readonly consistency: ConsistencyView;
  readonly saves: SavesView;
  readonly uploads: UploadsView;
  readonly detail: DetailView;
  private readonly card: HTMLElement;
  private readonly tabBar: HTMLElement;
  private readonly panels = new Map<Tab, HTMLElement>();
  private readonly content: HTMLElement;
  private tab: Tab = 'artifacts';
  private detailOf: Tab | null = null;
  info: IInstanceResponse | null = null;
  private loaded = false;

  constructor(private readonly options: ISidebarOptions) {
    super();
    this.id = 'lamin-sidebar';
    this.addClass('lamin-sidebar');
    this.api = options.api;
    const open = (from: Tab) => (artifact: IArtifact) => this.openDetail(from, artifact);
    this.artifacts = new ArtifactList(this.api, false, open('artifacts'));
    this.trash = new ArtifactList(this.api, true, open('trash'));
    this.detail = new DetailView(this.api, {
      insertCode: artifact => options.insertCode(artifact),
      changed: () => {
        void this.artifacts.reload();
        void this.trash.reload();
        options.changed();
      },
      back: () => this.closeDetail()
    });
    this.consistency = new ConsistencyView(this.api, () => options.changed());
    this.saves = new SavesView(this.api, () => {
      void this.artifacts.reload();
      options.changed();
    });
    this.uploads = new UploadsView(
      new UploadQueue(new RestUploads()),
      () => this.api.instance,
      () => {
        void this.artifacts.reload();
        options.changed();
      }
    );
    this.card = h('section', { className: 'lamin-instance', 'aria-label': 'Instance' });
    this.tabBar = h('div', { className: 'lamin-tabs', role: 'tablist' });
    this.content = h('div', { className: 'lamin-content' });
    const panels: [Tab, HTMLElement][] = [
      ['artifacts', this.artifacts.node],
      ['trash', this.trash.node],
      ['consistency', this.consistency.node],
      ['saves', this.saves.node],
      ['uploads', this.uploads.node]
    ];
    for (const [tab, node] of panels) {
      const panel = h('div', { className: 'lamin-panel', role: 'tabpanel', id: `lamin-panel-${tab}` }, node);
      this.panels.set(tab, panel);
      this.content.appendChild(panel);
    }
    this.content.appendChild(this.detail.node);
    this.node.append(
      h('header', { className: 'lamin-header' }, h('h2', {}, 'Lamin')),
      this.card,
      this.tabBar,
      this.content
    );
    this.renderTabs();
    this.listenForDrops();
    this.uploads.queue.onChange(() => this.labelUploads());
  }

  /** "Uploads (2)": what is left to do, visible from every tab (e.g. after a reload). */
  private labelUploads(): void {
    const open = this.uploads.queue.items.filter(i => i.state !== 'saved').length;
    const button = this.tabBar.querySelector<HTMLElement>('[data-tab="uploads"]');
    if (button) {
      button.textContent = open ? `Uploads (${open})` : 'Uploads';
    }
  }

  /** The whole sidebar is a drop zone for files and folders from the desktop. */
  private listenForDrops(): void {
    let depth = 0; // dragenter/dragleave fire for every child crossed
    const over = (on: boolean) => this.node.classList.toggle('lamin-mod-dropping', on);
    this.node.addEventListener('dragenter', (event: DragEvent) => {
      if (carriesFiles(event)) {
        depth += 1;
        over(true);
      }
    });
    this.node.addEventListener('dragleave', (event: DragEvent) => {
      if (carriesFiles(event)) {
        depth = Math.max(0, depth - 1);
        over(depth > 0);
      }
    });
    this.node.addEventListener('dragover', (event: DragEvent) => {
      if (carriesFiles(event) && event.dataTransfer) {
        event.preventDefault(); // allows the drop (the browser would open the file instead)
        event.dataTransfer.dropEffect = 'copy';
      }
    });
    this.node.addEventListener('drop', (event: DragEvent) => {
      if (!event.dataTransfer || !carriesFiles(event)) {
        return;
      }
      event.preventDefault();
      event.stopPropagation();
      depth = 0;
      over(false);
      this.select('uploads');
      void droppedFiles(event.dataTransfer).then(files => this.uploads.add(files));
    });
    this.node.append(h('div', { className: 'lamin-drop-overlay', 'aria-hidden': 'true' }, 'Drop to upload to Lamin'));
  }

  protected onAfterShow(): void {
    if (!this.loaded) {
      void this.refresh();
    }
  }

  /** Load the instance card and the list of the current tab. */
  async refresh(): Promise<void> {
    this.loaded = true;
    // the list of an instance already picked loads side by side with its card
    const early = this.api.instance ? this.artifacts.reload() : null;
    try {
      this.info = await this.api.instanceInfo();
    } catch (error) {
      clear(this.card, h('div', { className: 'lamin-error-text' }, error instanceof ApiError ? error.message : String(error)));
      return;
    }
    this.renderCard(this.info);
    void this.uploads.restore();
    if (this.info.instance) {
      const picked = this.info.instance.name;
      const list = early && this.api.instance === picked ? early : null;
      this.api.instance = picked;
      await Promise.all([list ?? this.artifacts.reload(), this.tab === 'trash' ? this.trash.reload() : null]);
    }
  }

  private renderCard(info: IInstanceResponse): void {
    this.node.classList.toggle('lamin-mod-empty', !info.instance);
    if (!info.instance) {
      clear(
        this.card,
        h(
          'div',
          { className: 'lamin-empty' },
          h('p', {}, 'No lamin_nb instance yet. Create one in a notebook cell:'),
          h('pre', { className: 'lamin-code' }, 'import lamin_nb as ln\nln.init(storage="./data")'),
          h('button', { className: 'lamin-button', onClick: () => void this.refresh() }, 'Refresh')
        )
      );
      return;
    }
    const inst = info.instance;
    const picker =
      info.known.length > 1
        ? h(
            'select',
            {
              className: 'lamin-instance-picker jp-mod-styled',
              'aria-label': 'Instance shown',
              onChange: (event: Event) => void this.switchTo((event.target as HTMLSelectElement).value)
            },
            ...info.known.map(name =>
              h('option', { value: name, selected: name === inst.name }, name === info.default ? `${name} (default)` : name)
            )
          )
        : h('span', { className: 'lamin-instance-name' }, inst.name);
    clear(
      this.card,
      h('div', { className: 'lamin-instance-title' }, picker),
      fields([
        ['storage', `${inst.storage} (${inst.storage_kind === 's3' ? 'S3' : 'local folder'})`],
        ['database', `${inst.database_kind === 'postgresql' ? 'PostgreSQL' : 'SQLite'}: ${inst.database}`]
      ])
    );
  }

  async switchTo(name: string): Promise<void> {
    this.api.instance = name;
    this.closeDetail();
    await this.refresh();
    this.options.changed();
  }

  select(tab: Tab): void {
    this.tab = tab;
    this.detailOf = null;
    this.renderTabs();
    if (tab === 'trash') {
      void this.trash.reload();
    }
  }

  private renderTabs(): void {
    clear(
      this.tabBar,
      ...TABS.map(([tab, label]) =>
        h(
          'button',
          {
            className: `lamin-tab${tab === this.tab ? ' lamin-mod-selected' : ''}`,
            role: 'tab',
            'aria-selected': tab === this.tab ? 'true' : 'false',
            'aria-controls': `lamin-panel-${tab}`,
            'data-tab': tab,
            onClick: () => this.select(tab),
            onKeydown: (event: KeyboardEvent) => this.onTabKey(event, tab)
          },
          label
        )
      )
    );
    this.labelUploads();
    for (const [tab, panel] of this.panels) {
      panel.hidden = tab !== this.tab || this.detailOf !== null;
    }
    this.detail.node.hidden = this.detailOf === null;
  }

  private onTabKey(event: KeyboardEvent, tab: Tab): void {
    const index = TABS.findIndex(([t]) => t === tab);
    const step = event.key === 'ArrowRight' ? 1 : event.key === 'ArrowLeft' ? -1 : 0;
    if (step) {
      const next = TABS[(index + step + TABS.length) % TABS.length][0];
      this.select(next);
      this.tabBar.querySelector<HTMLElement>(`[data-tab="${next}"]`)?.focus();
    }
  }

  private openDetail(from: Tab, artifact: IArtifact): void {
    this.detailOf = from;
    this.renderTabs();
    void this.detail.show(artifact.uid);
  }

  private closeDetail(): void {
    const from = this.detailOf;
    this.detailOf = null;
    this.renderTabs();
    if (from === 'artifacts' || from === 'trash') {
      (from === 'artifacts' ? this.artifacts : this.trash).search.focus();
    }
  }

  async save(paths: string[], request: ISaveRequest): Promise<void> {
    this.select('saves');
    await this.saves.start(paths, request);
  }
}
