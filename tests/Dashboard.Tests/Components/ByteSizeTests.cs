using EmaLab.Dashboard.Components.Shared;

namespace EmaLab.Dashboard.Tests;

public class ByteSizeTests
{
    [Theory]
    [InlineData(0, "0 B")]
    [InlineData(612, "612 B")]
    [InlineData(1023, "1023 B")]
    [InlineData(1024, "1.0 KiB")]
    [InlineData(3_500, "3.4 KiB")]
    [InlineData(62_000, "61 KiB")]
    [InlineData(1_258_291, "1.2 MiB")]
    [InlineData(5L << 30, "5.0 GiB")]
    public void A_size_reads_with_at_least_two_figures_and_a_small_file_is_never_zero(long bytes, string expected) =>
        Assert.Equal(expected, ByteSize.Format(bytes));
}
