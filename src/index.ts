// xenmig library entry point. Layers: stream (records), xen (hypervisor), engines, toolstack, transports.
export * as stream from './stream/index.js';
