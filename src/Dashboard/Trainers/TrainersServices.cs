using EmaLab.Dashboard.Hosting;
using EmaLab.Dashboard.Runs;

namespace EmaLab.Dashboard.Trainers;

public static class TrainersServices
{
    /// <summary>Who trains, as <see cref="EmaLabOptions.Trainer"/> says: Hangfire's jobs in PostgreSQL, or this process's
    /// queue and threads; the executor trains a run the same way under either.</summary>
    public static IServiceCollection AddTrainers(this IServiceCollection services, EmaLabOptions setup)
    {
        services.AddSingleton<RunExecutor>();
        if (setup.Trainer == TrainerKind.Hangfire)
            services.AddRunJobs(setup);
        else
        {
            services.AddSingleton<RunQueue>();
            services.AddSingleton<ITrainerHost, InProcessTrainers>();
            services.AddHostedService<RunWorker>();
        }
        return services;
    }
}
