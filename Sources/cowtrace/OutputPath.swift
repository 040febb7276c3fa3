import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// The one rule of every file cowtrace writes (`record -o`, `report -o`,
/// `stat --stacks`): an existing file is kept unless --force is given. Checked
/// with the other options, so the mistake exits 64 before anything runs.
/// Symbolic links and directories are left to the opener, which refuses them
/// with its own reason.
enum OutputPath {
    static func checkOverwrite(_ path: String?, _ option: String, force: Bool) throws {
        guard let path, !force else { return }
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return }
        throw ValidationError("\(option) \(path): the file exists; pass --force to overwrite it, or choose another path")
    }
}
