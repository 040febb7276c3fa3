import CELF
import Foundation

/// The function symbols of one ELF file (.symtab, or .dynsym when stripped)
/// and its PT_LOAD segments, read with libelf.
final class ELFSymbolTable {
    struct Symbol {
        let address: UInt64
        let size: UInt64
        let name: String
    }

    let symbols: [Symbol]
    private let segments: [celf_segment]

    init?(path: String) {
        var table = celf_table()
        guard celf_table_load(path, &table) == 0 else { return nil }
        defer { celf_table_free(&table) }
        symbols = (0..<table.symbol_count).map { i in
            let s = table.symbols[i]
            return Symbol(address: s.address, size: s.size, name: String(cString: s.name))
        }
        segments = (0..<table.segment_count).map { table.segments[$0] }
    }

    /// The ELF virtual address of a file offset (through the PT_LOAD segments).
    func virtualAddress(ofFileOffset offset: UInt64) -> UInt64? {
        for s in segments where offset >= s.offset && offset < s.offset + max(s.filesz, 1) {
            return s.vaddr + (offset - s.offset)
        }
        return nil
    }

    /// The function containing `address` (an ELF virtual address), with the
    /// offset into it.
    func symbolize(_ address: UInt64) -> (name: String, offset: UInt64)? {
        var low = 0, high = symbols.count
        while low < high {
            let mid = (low + high) / 2
            if symbols[mid].address <= address { low = mid + 1 } else { high = mid }
        }
        guard low > 0 else { return nil }
        // Several symbols can share an address (aliases): any of them that covers it.
        var i = low - 1
        while i >= 0 && symbols[i].address == symbols[low - 1].address {
            let s = symbols[i]
            if address < s.address + max(s.size, 1) { return (s.name, address - s.address) }
            i -= 1
        }
        return nil
    }
}
