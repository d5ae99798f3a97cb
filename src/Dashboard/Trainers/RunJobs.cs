using EmaLab.Dashboard.Runs;
using System.ComponentModel;
using Hangfire;
using Hangfire.PostgreSql;
using Hangfire.Server;
using Microsoft.Extensions.Options;
using EmaLab.Dashboard.Hosting;

namespace EmaLab.Dashboard.Trainers;

/// <summary>The Hangfire job that trains one run on whichever worker process fetched it.</summary>
public sealed class RunJob(RunExecutor executor, IHostApplicationLifetime lifetime, IOptions<EmaLabOptions> options, ILogger<RunJob> logger)
{
    readonly string _workerName = options.Value.Training.ResolveWorkerName();

    /// <summary>
    /// Trains the run if this job's ticket is still the run's. No retries by Hangfire: a failing run ends failed with its
    /// reason, and a job whose worker died is fetched again after the invisibility timeout, which resumes the run.
    /// </summary>
    [AutomaticRetry(Attempts = 0)]
    [DisplayName("Train run {0}")]
    public void Train(long runId, string dispatchId, PerformContext? context, CancellationToken cancellationToken)
    {
        TrainerPriority.Raise(logger);
        var job = new JobTicket(dispatchId, context?.BackgroundJob.Id, _workerName, cancellationToken);
        executor.Execute(runId, lifetime.ApplicationStopping, job);
    }
}

/// <summary>Hangfire's storage in the app's PostgreSQL database (schema <c>hangfire</c>), built on first use.</summary>
public static class RunJobStorage
{
    public static void AddRunJobs(this IServiceCollection services, EmaLabOptions options)
    {
        services.AddSingleton<JobStorage>(provider =>
        {
            var storageOptions = new PostgreSqlStorageOptions
            {
                // Without sliding, a job that runs longer than the timeout is fetched again by another worker (Hangfire's
                // known trap); with it, the worker renews its claim every fifth of the timeout while the job runs.
                UseSlidingInvisibilityTimeout = true,
                InvisibilityTimeout = TimeSpan.FromSeconds(options.Training.JobInvisibilitySeconds),
                // Workers learn of a new job through LISTEN/NOTIFY at once; polling is only the fallback.
                EnableLongPolling = true,
                QueuePollInterval = TimeSpan.FromSeconds(5),
                // Installed by the web role only, under the database's schema lock (see DatabaseInitializer).
                PrepareSchemaIfNecessary = options.Serves,
            };
            var connectionString = provider.GetRequiredService<IConfiguration>().GetConnectionString(Data.DatabaseRegistration.ConnectionStringName)!;
            HangfireLog.WriteTo(provider.GetRequiredService<ILoggerFactory>());
            return new PostgreSqlStorage(new Hangfire.PostgreSql.Factories.NpgsqlConnectionFactory(connectionString, storageOptions), storageOptions);
        });
        // Its tables are built with the storage (only the web role's lets it install them).
        services.AddSingleton(new Data.SchemaPart(provider => provider.GetRequiredService<JobStorage>()));
        // Hangfire's static JobStorage.Current is never set: every client and server here is given this process's storage.
        services.AddSingleton<IBackgroundJobClient>(provider => new BackgroundJobClient(provider.GetRequiredService<JobStorage>()));
        services.AddSingleton<ITrainerHost, HangfireTrainers>();
        services.AddSingleton<RunJob>();
        if (options.Trains) services.AddHostedService<RunJobServer>();
    }
}

/// <summary>
/// The Hangfire server of a training process: <see cref="TrainingOptions.MaxConcurrentRuns"/> workers (dedicated threads,
/// as TorchSharp needs), each training one run at a time.
/// </summary>
public sealed class RunJobServer(JobStorage storage, IServiceProvider services, IHostApplicationLifetime lifetime, IOptions<EmaLabOptions> options)
    : IHostedService
{
    BackgroundJobServer? _server;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _server = new BackgroundJobServer(new BackgroundJobServerOptions
        {
            ServerName = options.Value.Training.ResolveWorkerName(),
            WorkerCount = options.Value.Training.MaxConcurrentRuns,
            Activator = new ServiceJobActivator(services),
        }, storage);
        // No new job is fetched once the process begins to stop: a run it hands back goes to another worker.
        lifetime.ApplicationStopping.Register(SendStop);
        return Task.CompletedTask;
    }

    /// <summary>Once, whoever asks first; a host may be stopped twice (a test factory's dispose after a stop), the server disposed by then.</summary>
    void SendStop()
    {
        try { Volatile.Read(ref _server)?.SendStop(); }
        catch (ObjectDisposedException) { }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        var server = Interlocked.Exchange(ref _server, null);
        if (server is null) return;
        server.SendStop();
        // Waits for the jobs to end (each saves a bundle and hands its run back), as long as the host gives its services.
        try { await server.WaitForShutdownAsync(cancellationToken); }
        catch (OperationCanceledException) { }
        server.Dispose();
    }

    sealed class ServiceJobActivator(IServiceProvider services) : JobActivator
    {
        public override object ActivateJob(Type jobType) => ActivatorUtilities.GetServiceOrCreateInstance(services, jobType);
    }
}
