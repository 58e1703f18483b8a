/// Where cofferd and its clients meet when nothing else is said: paths for a host install.
public enum CofferDefaults {
    public static let dataDirectory = "/var/lib/coffer"
    public static let adminSocket = "/run/coffer/admin.sock"
    public static let workerSocket = "/run/coffer/worker.sock"
}
