// The Xen migration stream layer: records, reader, writer, validator. No I/O policy, no hypervisor.
export {};
