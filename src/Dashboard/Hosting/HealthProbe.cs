namespace EmaLab.Dashboard.Hosting;

/// <summary>
/// <c>EmaLab.Dashboard --health-check &lt;url&gt;</c>: asks a running server's <c>/health</c> and exits 0 when it
/// answers Healthy (for a container HEALTHCHECK in an image without curl).
/// </summary>
public static class HealthProbe
{
    public const string Argument = "--health-check";

    public static async Task<int> RunAsync(string url)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(4) };
        try
        {
            var answer = await client.GetStringAsync(url);
            Console.WriteLine(answer);
            return answer == "Healthy" ? 0 : 1;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            Console.Error.WriteLine($"{url}: {e.Message}");
            return 1;
        }
    }
}
