using Hangfire.Logging;
using HangfireLevel = Hangfire.Logging.LogLevel;
using LogLevel = Microsoft.Extensions.Logging.LogLevel;

namespace EmaLab.Dashboard.Trainers;

/// <summary>
/// Hangfire's log in the app's <see cref="ILogger"/>: Hangfire logs through one static provider per process and is silent
/// without one, so a worker whose fetches fail (and that backs off for minutes) would leave no trace. Lines go to the
/// logger factory of the app that built its job storage last (the only one outside tests); a line logged after that app
/// is gone is dropped, never thrown into Hangfire's own threads.
/// </summary>
sealed class HangfireLog : ILogProvider
{
    static readonly HangfireLog Bridge = new();
    volatile ILoggerFactory? _factory;

    public static void WriteTo(ILoggerFactory factory)
    {
        Bridge._factory = factory;
        LogProvider.SetCurrentLogProvider(Bridge);
    }

    public ILog GetLogger(string name) => new Forwarder(this, name);

    sealed class Forwarder(HangfireLog bridge, string name) : ILog
    {
        public bool Log(HangfireLevel logLevel, Func<string>? messageFunc, Exception? exception = null)
        {
            if (bridge._factory is not { } factory) return false;
            var level = logLevel switch
            {
                HangfireLevel.Trace => LogLevel.Trace,
                HangfireLevel.Debug => LogLevel.Debug,
                HangfireLevel.Info => LogLevel.Information,
                HangfireLevel.Warn => LogLevel.Warning,
                HangfireLevel.Error => LogLevel.Error,
                _ => LogLevel.Critical,
            };
            try
            {
                var logger = factory.CreateLogger(name);
                if (messageFunc is null) return logger.IsEnabled(level); // Hangfire asks whether a level is on
                if (!logger.IsEnabled(level)) return false;
                logger.Log(level, exception, "{HangfireMessage}", messageFunc());
                return true;
            }
            catch (ObjectDisposedException)
            {
                return false; // that app has stopped (tests build several in one process)
            }
        }
    }
}
