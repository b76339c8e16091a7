/**
 * lamin_nb in JupyterLab: the "Lamin" sidebar, the sync state in the status bar, palette
 * commands and "Save to Lamin…" in the file browser's context menu. Everything goes through
 * the server extension's REST API (`lamin_nb.jupyter.handlers`).
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';

import { IArtifact, LaminApi } from './api';
import { loadCode } from './format';
import { DEFAULT_BACKOFF } from './poll';
import { askSave } from './saves';
import { LaminSidebar } from './sidebar';
import { LaminStatus } from './statusbar';

const PLUGIN_ID = '@lamin-nb/jupyterlab:plugin';

export const laminIcon = new LabIcon({
  name: 'lamin-nb:lamin',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161"><ellipse cx="12" cy="5" rx="8" ry="3"/><path d="M4 7.5v4c0 1.7 3.6 3 8 3s8-1.3 8-3v-4c-1.6 1.3-4.6 2-8 2s-6.4-.7-8-2z"/><path d="M4 14v4c0 1.7 3.6 3 8 3s8-1.3 8-3v-4c-1.6 1.3-4.6 2-8 2s-6.4-.7-8-2z"/></g></svg>'
});

export namespace CommandIDs {
  export const open = 'lamin:open-sidebar';
  export const check = 'lamin:check';
  export const refresh = 'lamin:refresh';
  export const saveFile = 'lamin:save-file';
  export const saveSelection = 'lamin:save-to-lamin';
}

function insertInto(tracker: INotebookTracker | null, app: JupyterFrontEnd, api: LaminApi) {
  return (artifact: IArtifact): boolean => {
    const panel = tracker?.currentWidget;
    if (!panel || !api.instance) {
      return false;
    }
    const notebook = panel.content;
    const code = loadCode(api.instance, artifact);
    const cell = notebook.activeCell;
    if (cell && cell.model.type === 'code' && cell.model.sharedModel.getSource().trim() === '') {
      cell.model.sharedModel.setSource(code);
    } else {
      // never overwrite what the user wrote: the code goes into a new cell below
      NotebookActions.insertBelow(notebook);
      notebook.activeCell?.model.sharedModel.setSource(code);
    }
    app.shell.activateById(panel.id);
    return true;
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'The Lamin sidebar, status-bar item and commands of lamin_nb',
  autoStart: true,
  optional: [
    ICommandPalette,
    IStatusBar,
    INotebookTracker,
    IDefaultFileBrowser,
    ILayoutRestorer,
    ISettingRegistry
  ],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    statusBar: IStatusBar | null,
    tracker: INotebookTracker | null,
    browser: IDefaultFileBrowser | null,
    restorer: ILayoutRestorer | null,
    settings: ISettingRegistry | null
  ) => {
    const api = new LaminApi();
    let status: LaminStatus | null = null;
    const sidebar = new LaminSidebar({
      api,
      insertCode: insertInto(tracker, app, api),
      changed: () => void status?.poller.refresh()
    });
    sidebar.title.icon = laminIcon;
    sidebar.title.caption = 'Lamin: artifacts and sync state';
    app.shell.add(sidebar, 'left', { rank: 650 });
    restorer?.add(sidebar, 'lamin-sidebar');

    const openSidebar = () => {
      app.shell.activateById(sidebar.id);
    };

    if (statusBar) {
      status = new LaminStatus(api, () => {
        openSidebar();
        sidebar.select('consistency');
        if (!sidebar.consistency.report) {
          void sidebar.consistency.check(false);
        }
      });
      statusBar.registerStatusItem('lamin-nb:status', { item: status, align: 'left', rank: 50 });
    }

    if (settings) {
      void settings.load(PLUGIN_ID).then(loaded => {
        const apply = () => {
          const interval = loaded.get('statusInterval').composite as number;
          if (status) {
            status.poller.options = { ...DEFAULT_BACKOFF, interval };
            void status.poller.refresh();
          }
        };
        apply();
        loaded.changed.connect(apply);
      });
    }

    const selectedPaths = (): string[] => {
      const paths: string[] = [];
      if (browser) {
        for (const item of browser.selectedItems()) {
          paths.push(item.path);
        }
      }
      return paths;
    };

    const save = async (paths: string[]) => {
      if (!paths.length) {
        await showErrorMessage(
          'Save to Lamin',
          'Select files or folders in the file browser (or open a file) first.'
        );
        return;
      }
      if (!sidebar.info) {
        await sidebar.refresh();
      }
      const instance = api.instance ?? sidebar.info?.instance?.name;
      if (!instance) {
        await showErrorMessage('Save to Lamin', 'No lamin_nb instance yet: run ln.init(storage="./data") in a notebook.');
        return;
      }
      const request = await askSave(paths, instance);
      if (request) {
        openSidebar();
        await sidebar.save(paths, request);
      }
    };

    app.commands.addCommand(CommandIDs.open, {
      label: 'Lamin: Open sidebar',
      caption: 'Show the Lamin sidebar',
      execute: openSidebar
    });
    app.commands.addCommand(CommandIDs.check, {
      label: 'Lamin: Check consistency',
      caption: 'Compare storage and database now',
      execute: async () => {
        openSidebar();
        sidebar.select('consistency');
        await sidebar.consistency.check(false);
      }
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Lamin: Refresh',
      execute: async () => {
        await sidebar.refresh();
        await status?.poller.refresh();
      }
    });
    app.commands.addCommand(CommandIDs.saveSelection, {
      label: 'Save to Lamin…',
      caption: 'Save the selected files and folders to the lamin_nb instance',
      icon: laminIcon,
      execute: () => save(selectedPaths())
    });
    app.commands.addCommand(CommandIDs.saveFile, {
      label: 'Lamin: Save file to Lamin…',
      execute: () => {
        let paths = selectedPaths();
        if (!paths.length) {
          const current = app.shell.currentWidget as any;
          const path = current?.context?.path;
          paths = path ? [path] : [];
        }
        return save(paths);
      }
    });
    app.contextMenu.addItem({
      command: CommandIDs.saveSelection,
      selector: '.jp-DirListing-item[data-isdir]',
      rank: 12
    });
    if (palette) {
      for (const command of [CommandIDs.check, CommandIDs.open, CommandIDs.saveFile, CommandIDs.refresh]) {
        palette.addItem({ command, category: 'Lamin' });
      }
    }
  }
};

export default plugin;
