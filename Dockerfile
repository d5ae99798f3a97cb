# EMA Lab dashboard image. The official .NET 10 images ship a libstdc++ new enough for TorchSharp,
# so the build's prerequisite check finds nothing to install.
#   docker build -t emalab .
#   docker run -p 8080:8080 -v emalab:/data -e EmaLab__Admin__UserName=ana -e EmaLab__Admin__Password='a long passphrase' emalab
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
# Restore in a layer of its own: it is redone only when a project file or package version changes.
COPY global.json Directory.Build.props Directory.Packages.props ./
COPY eng/ eng/
COPY src/TrainingEngine/TrainingEngine.csproj src/TrainingEngine/
COPY src/Dashboard/Dashboard.csproj src/Dashboard/
RUN dotnet restore src/Dashboard/Dashboard.csproj -r linux-x64
COPY src/ src/
# linux-x64 only: no Windows or macOS natives of TorchSharp in the image.
RUN dotnet publish src/Dashboard/Dashboard.csproj -c Release -r linux-x64 --self-contained false --no-restore -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0
# The default run's dataset: Fashion-MNIST from the distribution's dataset-fashion-mnist (30 MB), read where Debian
# and Ubuntu install it (/usr/share/datasets/fashion-mnist).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app .
# Inside a container the app must listen on all interfaces (the port is published explicitly with -p);
# that is an explicit setting here, and it turns accounts on (the first admin from EmaLab__Admin__*, or the
# one-time setup link in the log). Every API call and page then needs credentials, so any host name may
# reach it (AllowedHosts).
# One malloc arena (as `dotnet run` and the tests have it): a run trains on a thread of its own, and libtorch's
# feature maps fit no 64 MB heap of a thread's arena, so they were mapped and unmapped at every pass.
ENV ASPNETCORE_HTTP_PORTS=8080 \
    MALLOC_ARENA_MAX=1 \
    EmaLab__AllowRemote=true \
    EmaLab__DataDirectory=/data \
    AllowedHosts=*
# The image's non-root user owns the data folder the volume is mounted on, and the artifact folder that
# compose.yaml shares between the web and worker containers.
RUN mkdir -p /data /artifacts && chown "$APP_UID" /data /artifacts
USER $APP_UID
VOLUME /data
EXPOSE 8080
# The image has no curl: the app probes its own /health.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["dotnet", "EmaLab.Dashboard.dll", "--health-check", "http://127.0.0.1:8080/health"]
ENTRYPOINT ["dotnet", "EmaLab.Dashboard.dll"]
