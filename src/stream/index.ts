// The Xen migration stream layer: records, reader, writer, validator. No I/O policy, no hypervisor.
//
// API overview
//   Reading
//     readStream(input, opts?) / new StreamReader(input, opts?)   async iterable of StreamItem
//       input: path | fd | Uint8Array | Node Readable | AsyncIterable<Uint8Array> | ByteSource
//       opts:  format 'auto'|'xl'|'libxl'|'libxc'|'colo-back', lazyPageData, unknownOptional
//              'yield'|'skip', afterEnd 'check'|'stop', chunkSize, maxRecordLength
//       items: { kind: 'xl-header'|'libxl-header'|'image-header'|'domain-header'|'record',
//                layer: 'xl'|'libxl'|'libxc', index, offset, size, name, ... }
//       record items carry `record` (typed LibxcRecord / LibxlRecord, discriminated by `name`),
//       `type` (number), `bodyLength`, `badPaddingAt`. PAGE_DATA: pfns (Float64Array), types
//       (Uint8Array), data (view of the read buffer, valid until the next item) or, with
//       lazyPageData, readPayloadInto(target) / skipPayload().
//       reader.summary: { format, endedBy: 'END'|'EOF'|null, bytes, items }
//     readAll(input, opts?)                       small inputs: all items in an array
//     toByteSource(input), BytesSource, ChunkSource, FdSource   the pull interface
//                                                 (readExact / readInto / peek / skip)
//   Validating
//     validateStream(input, opts?) -> { facts, warnings, summary }
//     new StreamValidator(opts?).check(item) ... .finish(reader.summary)
//       opts: streamType 'plain'|'remus'|'colo'|'auto', reserved/padding 'error'|'warn'
//   Writing
//     encodeImageHeader, encodeDomainHeader, encodeLibxlHeader, encodeXlHeader,
//     encodeLibxcRecord, encodeLibxlRecord, encodeRecord(layer, record), encodeItem(item),
//     encodePageDataHeader({pfns, types}) (record header + count + pfn words, for writev),
//     pageDataBatches(pfns, types, data)
//     new StreamWriter(writable | fd): write{Xl,Libxl,Image,Domain}Header, writeLibxcRecord,
//       writeLibxlRecord, writeRecord(type, body), writePages(pfns, types, data), writeItem,
//       writeRaw(...chunks), end(); every write resolves when the bytes were handed over.
//   Errors: StreamError { code, offset, recordIndex, recordType, layer }, StreamErrorCode.
export * from './constants.js';
export * from './errors.js';
export * from './libxc.js';
export * from './libxl.js';
export * from './xl.js';
export * from './source.js';
export * from './reader.js';
export * from './writer.js';
export * from './validator.js';
export { concatBytes, bytesEqual, copyBytes } from './bytes.js';
