import CCofferShims
import CofferCore
#if canImport(Glibc)
import Glibc
#endif

/// Hardening cofferd applies to itself before it opens the store.
public enum ProcessProtection {
    /// No core dumps, and not dumpable: a crash or a debugger of the same uid cannot read keys or values.
    public static func apply() throws(CofferError) {
        guard coffer_protect_process() == 0 else {
            throw CofferError(.failedPrecondition,
                              "cannot disable core dumps: \(String(cString: strerror(errno)))")
        }
    }
}
