// The libxl domain config as the xl header carries it: what parseDomainConfig refuses, and how it says so.
import { describe, expect, it } from 'vitest';
import { parseDomainConfig } from '../../src/toolstack/config.js';

describe('parseDomainConfig', () => {
  it('an unknown guest type is named in the error as the config wrote it', () => {
    expect(() => parseDomainConfig('{"c_info":{"type":"arm"}}')).toThrow('unknown guest type "arm"');
    expect(() => parseDomainConfig('{"c_info":{"type":{"kind":"hvm"}}}')).toThrow(
      'unknown guest type "{"kind":"hvm"}"',
    );
  });
});
