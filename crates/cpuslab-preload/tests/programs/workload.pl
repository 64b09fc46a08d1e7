# An allocation-heavy Perl workload: a 100k-entry hash, a sort, string
# building, deletes; prints a checksum that does not depend on the allocator.
use strict;
use warnings;

my %h;
for my $i (0 .. 99_999) {
    $h{"key" . (($i * 7919) % 1_000_003)} = ("v" . $i) x (1 + $i % 5);
}
my @keys = sort keys %h;
my $sum = 0;
for my $k (@keys) {
    $sum = ($sum * 31 + length($h{$k}) + length($k)) % 1_000_000_007;
}
for my $i (0 .. 49_999) {
    delete $h{"key" . (($i * 7919) % 1_000_003)};
}
my @words = map { sprintf("%x", ($_ * 2654435761) % 1_000_003) . ("w" x ($_ % 30)) } 0 .. 99_999;
my $joined = join(",", sort @words);
my @split = split /,/, $joined;
$sum = ($sum + scalar(@split) + length($joined) + scalar(keys %h)) % 1_000_000_007;
print "perl checksum $sum\n";
