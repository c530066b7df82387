// libxl's stored domain config (XEN_LIB_DIR/userdata-d.<domid>.<uuid>.libxl-json): what xenmig reads
// to save a domain with its real config, and writes for the domains it builds on a real host.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  findLibxlStoredConfig,
  removeLibxlStoredConfig,
  writeLibxlStoredConfig,
} from '../../src/toolstack/libxl-config.js';
import { parseDomainConfig, withName } from '../../src/toolstack/config.js';

const dir = mkdtempSync(join(tmpdir(), 'xenmig-libxl-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const json = {
  c_info: { type: 'pvh', name: 'g-pvh', uuid: '7f07ddbd-7f10-46c5-a802-315110b4db89' },
  b_info: { max_vcpus: 1, max_memkb: 131072, target_memkb: 131072, kernel: '/guest/vmlinuz' },
};

describe('libxl stored config', () => {
  it('writes what it reads back, replacing a stale file of an earlier domain with the same domid, keeping others', () => {
    writeFileSync(
      join(dir, 'userdata-d.12.00000000-0000-4000-8000-000000000001.libxl-json'),
      '{"c_info":{"name":"old"}}',
    );
    writeFileSync(join(dir, 'userdata-d.12.00000000-0000-4000-8000-000000000001.xl'), 'old xl config');
    writeFileSync(
      join(dir, 'userdata-d.120.00000000-0000-4000-8000-000000000002.libxl-json'),
      '{"c_info":{"name":"other"}}',
    );
    const f = writeLibxlStoredConfig(12, json.c_info.uuid, json, dir);
    expect(f).toBe(join(dir, `userdata-d.12.${json.c_info.uuid}.libxl-json`));
    const { config, why } = findLibxlStoredConfig(12, undefined, dir);
    expect(why).toBe(`userdata-d.12.${json.c_info.uuid}.libxl-json`);
    expect(config?.name).toBe('g-pvh');
    expect(config?.kind).toBe('pvh');
    expect(config?.maxMemKb).toBe(131072);
    expect(readdirSync(dir).sort()).toEqual(
      [
        'userdata-d.12.00000000-0000-4000-8000-000000000001.xl',
        `userdata-d.12.${json.c_info.uuid}.libxl-json`,
        'userdata-d.120.00000000-0000-4000-8000-000000000002.libxl-json',
      ].sort(),
    );
  });

  it('removes a dead domain’s configs (all of its userdata with `all`), not its neighbours’', () => {
    removeLibxlStoredConfig(12, dir);
    expect(existsSync(join(dir, 'userdata-d.12.00000000-0000-4000-8000-000000000001.xl'))).toBe(true);
    expect(findLibxlStoredConfig(12, undefined, dir).config).toBeNull();
    removeLibxlStoredConfig(12, dir, true);
    expect(readdirSync(dir)).toEqual(['userdata-d.120.00000000-0000-4000-8000-000000000002.libxl-json']);
  });
});

describe('withName', () => {
  it('renames c_info.name and keeps everything else', () => {
    const c = parseDomainConfig(
      JSON.stringify({ ...json, c_info: { ...json.c_info, name: 'g-pvh--incoming' } }),
    );
    const r = withName(c, 'g-pvh');
    expect(r.name).toBe('g-pvh');
    expect(JSON.parse(r.text)).toEqual(json);
    expect(withName(r, 'g-pvh')).toBe(r);
    expect(c.name).toBe('g-pvh--incoming');
  });
});
